# Rendered by mlserve from mlserve.toml. Do not edit: change the manifest (or templates/) and run `mlserve render`.

variable "kubeconfig_path" {
  description = "Path of the kubeconfig file used to reach the cluster."
  type        = string
  default     = "~/.kube/config"
}

variable "kube_context" {
  description = "kubeconfig context of the cluster (null: the current context)."
  type        = string
  default     = "acme-edge"
}

variable "chart_versions" {
  description = "Helm chart version of each platform component."
  type        = map(string)
  default = {
    cert_manager          = "v1.16.2"
    dcgm_exporter         = "3.6.1"
    istio                 = "1.24.2"
    keda                  = "2.16.1"
    kserve                = "v0.15.2"
    kube_prometheus_stack = "67.9.0"
    nvidia_device_plugin  = "0.17.0"
  }
}

variable "monitoring_namespace" {
  description = "Namespace of the Prometheus stack."
  type        = string
  default     = "monitoring"
}

variable "prometheus_retention" {
  description = "How long Prometheus keeps samples (rollout analyses read the last hours)."
  type        = string
  default     = "15d"
}
