# Rendered by mlserve from mlserve.toml. Do not edit: change the manifest (or templates/) and run `mlserve render`.

output "releases" {
  description = "Installed Helm releases: name -> chart version."
  value = {
    "dcgm-exporter"         = helm_release.dcgm_exporter.version
    "istio-base"            = helm_release.istio_base.version
    "istiod"                = helm_release.istiod.version
    "keda"                  = helm_release.keda.version
    "kube-prometheus-stack" = helm_release.kube_prometheus_stack.version
    "nvidia-device-plugin"  = helm_release.nvidia_device_plugin.version
    "seldon-core"           = helm_release.seldon_core_operator.version
  }
}

output "monitoring_namespace" {
  description = "Namespace of the Prometheus stack."
  value       = var.monitoring_namespace
}

output "prometheus_url" {
  description = "In-cluster URL of Prometheus, where rollout analyses read metrics."
  value       = "http://prometheus-operated.monitoring.svc:9090"
}
