# Rendered by mlserve from mlserve.toml. Do not edit: change the manifest (or templates/) and run `mlserve render`.

output "releases" {
  description = "Installed Helm releases: name -> chart version."
  value = {
    "cert-manager"          = helm_release.cert_manager.version
    "dcgm-exporter"         = helm_release.dcgm_exporter.version
    "istio-base"            = helm_release.istio_base.version
    "istiod"                = helm_release.istiod.version
    "keda"                  = helm_release.keda.version
    "kserve"                = helm_release.kserve.version
    "kserve-crd"            = helm_release.kserve_crd.version
    "kube-prometheus-stack" = helm_release.kube_prometheus_stack.version
    "nvidia-device-plugin"  = helm_release.nvidia_device_plugin.version
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
