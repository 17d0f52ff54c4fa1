# Rendered by mlserve from mlserve.toml. Do not edit: change the manifest (or templates/) and run `mlserve render`.

variable "region" {
  description = "AWS region of the cluster."
  type        = string
  default     = "eu-west-1"
}

variable "aws_endpoint_url" {
  description = "Custom endpoint for the EC2, EKS, IAM and STS APIs (null: the AWS defaults)."
  type        = string
  default     = null
}

variable "cluster_name" {
  description = "Name of the EKS cluster."
  type        = string
  default     = "acme-ml-staging"
}

variable "kubernetes_version" {
  description = "Kubernetes minor version of the EKS control plane and node groups."
  type        = string
  default     = "1.31"
}

variable "vpc_cidr" {
  description = "CIDR block of the cluster VPC."
  type        = string
  default     = "10.40.0.0/16"
}

variable "availability_zones" {
  description = "Availability zones for the subnets (at least two, as EKS requires)."
  type        = list(string)
  default     = ["eu-west-1a", "eu-west-1b"]
}

variable "cpu_instance_types" {
  description = "Instance types of the CPU node group (system pods, CPU-only endpoints)."
  type        = list(string)
  default     = ["m6i.xlarge"]
}

variable "cpu_node_group_size" {
  description = "Minimum, maximum and desired size of the CPU node group."
  type = object({
    min     = number
    max     = number
    desired = number
  })
  default = {
    min     = 2
    max     = 6
    desired = 2
  }
}

variable "gpu_node_groups" {
  description = "GPU managed node groups by name: instance types, GPU type label and size."
  type = map(object({
    gpu_type       = string
    instance_types = list(string)
    min            = number
    max            = number
    desired        = number
  }))
  default = {
    "gpu-a10g" = {
      gpu_type       = "a10g"
      instance_types = ["g5.xlarge"]
      min            = 1
      max            = 8
      desired        = 1
    }
  }
}

variable "tags" {
  description = "Tags on every AWS resource of this layer."
  type        = map(string)
  default     = { "managed-by" = "mlserve", "mlserve.io/environment" = "staging", "mlserve.io/project" = "acme-ml", "owner" = "ml-platform@acme.example" }
}
