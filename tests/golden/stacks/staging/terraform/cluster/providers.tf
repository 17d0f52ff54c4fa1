# Rendered by mlserve from mlserve.toml. Do not edit: change the manifest (or templates/) and run `mlserve render`.

provider "aws" {
  region = var.region

  # Point every AWS API this layer uses at one URL (a local test server, a VPC
  # endpoint proxy). Unset, the provider uses the real AWS endpoints, or the
  # AWS_ENDPOINT_URL environment variable when that is set.
  dynamic "endpoints" {
    for_each = var.aws_endpoint_url == null ? [] : [var.aws_endpoint_url]
    content {
      ec2 = endpoints.value
      eks = endpoints.value
      iam = endpoints.value
      sts = endpoints.value
    }
  }

  default_tags {
    tags = var.tags
  }
}
