# Rendered by mlserve from mlserve.toml. Do not edit: change the manifest (or templates/) and run `mlserve render`.

# Node groups live in the private subnets. The GPU groups run the NVIDIA-enabled
# Amazon Linux 2023 AMI and carry the nvidia.com/gpu taint, so only pods that ask for
# a GPU (and tolerate the taint) land on them.
#
# lifecycle: desired_size is left to the cluster autoscaler once the group exists, and
# remote_access is never set by mlserve (nodes are reached through kubectl/SSM); an API
# that reports a default SSH key for it must not force a replacement of every node.

resource "aws_eks_node_group" "cpu" {
  cluster_name    = aws_eks_cluster.this.name
  node_group_name = "cpu"
  node_role_arn   = aws_iam_role.node.arn
  subnet_ids      = aws_subnet.private[*].id
  version         = var.kubernetes_version
  ami_type        = "AL2023_x86_64_STANDARD"
  capacity_type   = "ON_DEMAND"
  instance_types  = var.cpu_instance_types

  scaling_config {
    min_size     = var.cpu_node_group_size.min
    max_size     = var.cpu_node_group_size.max
    desired_size = var.cpu_node_group_size.desired
  }

  labels = {
    "mlserve.io/node-pool" = "cpu"
  }

  lifecycle {
    ignore_changes = [scaling_config[0].desired_size, remote_access]
  }

  depends_on = [aws_iam_role_policy_attachment.node]
}

resource "aws_eks_node_group" "gpu" {
  for_each = var.gpu_node_groups

  cluster_name    = aws_eks_cluster.this.name
  node_group_name = each.key
  node_role_arn   = aws_iam_role.node.arn
  subnet_ids      = aws_subnet.private[*].id
  version         = var.kubernetes_version
  ami_type        = "AL2023_x86_64_NVIDIA"
  capacity_type   = "ON_DEMAND"
  instance_types  = each.value.instance_types

  scaling_config {
    min_size     = each.value.min
    max_size     = each.value.max
    desired_size = each.value.desired
  }

  labels = {
    "mlserve.io/node-pool"   = each.key
    "mlserve.io/gpu"         = "true"
    "mlserve.io/gpu-type"    = each.value.gpu_type
    "nvidia.com/gpu.present" = "true"
  }

  taint {
    key    = "nvidia.com/gpu"
    value  = "true"
    effect = "NO_SCHEDULE"
  }

  lifecycle {
    ignore_changes = [scaling_config[0].desired_size, remote_access]
  }

  depends_on = [aws_iam_role_policy_attachment.node]
}
