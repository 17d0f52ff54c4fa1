# Rendered by mlserve from mlserve.toml. Do not edit: change the manifest (or templates/) and run `mlserve render`.

output "cluster_name" {
  description = "Name of the EKS cluster."
  value       = aws_eks_cluster.this.name
}

output "cluster_endpoint" {
  description = "URL of the Kubernetes API server."
  value       = aws_eks_cluster.this.endpoint
}

output "cluster_certificate_authority" {
  description = "Base64 CA certificate of the API server (for kubeconfig)."
  value       = aws_eks_cluster.this.certificate_authority[0].data
}

output "region" {
  description = "AWS region of the cluster."
  value       = var.region
}

output "vpc_id" {
  description = "ID of the cluster VPC."
  value       = aws_vpc.this.id
}

output "private_subnet_ids" {
  description = "Private subnets the node groups run in."
  value       = aws_subnet.private[*].id
}

output "cpu_node_group_name" {
  description = "Name of the CPU node group."
  value       = aws_eks_node_group.cpu.node_group_name
}

output "gpu_node_group_names" {
  description = "Names of the GPU node groups."
  value       = sort([for g in aws_eks_node_group.gpu : g.node_group_name])
}

output "node_group_names" {
  description = "Names of every node group of the cluster."
  value       = concat([aws_eks_node_group.cpu.node_group_name], sort([for g in aws_eks_node_group.gpu : g.node_group_name]))
}
