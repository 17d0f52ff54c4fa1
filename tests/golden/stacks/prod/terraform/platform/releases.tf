# Rendered by mlserve from mlserve.toml. Do not edit: change the manifest (or templates/) and run `mlserve render`.

# The cluster-wide components the endpoints rely on, installed as Helm releases:
# Istio (mTLS, traffic splitting, mirroring), Seldon Core v1, the Prometheus stack
# (rollout metrics) and the NVIDIA device plugin with the DCGM exporter.
#
# Custom resources (InferenceService, VirtualService, ...) are not created here: they
# live in the kubernetes folder and are applied once these CRDs exist.

resource "helm_release" "istio_base" {
  name             = "istio-base"
  repository       = "https://istio-release.storage.googleapis.com/charts"
  chart            = "base"
  version          = var.chart_versions["istio"]
  namespace        = "istio-system"
  create_namespace = true
}

resource "helm_release" "istiod" {
  name       = "istiod"
  repository = "https://istio-release.storage.googleapis.com/charts"
  chart      = "istiod"
  version    = var.chart_versions["istio"]
  namespace  = "istio-system"
  wait       = true

  values = [yamlencode({
    meshConfig = {
      enablePrometheusMerge = true
    }
  })]

  depends_on = [helm_release.istio_base]
}

# KEDA scales the endpoints whose autoscaling metric is concurrency or rps, from
# Istio's request metrics in Prometheus (the HPA alone knows only CPU and memory).
resource "helm_release" "keda" {
  name             = "keda"
  repository       = "https://kedacore.github.io/charts"
  chart            = "keda"
  version          = var.chart_versions["keda"]
  namespace        = "keda"
  create_namespace = true
}

resource "helm_release" "seldon_core_operator" {
  name             = "seldon-core"
  repository       = "https://storage.googleapis.com/seldon-charts"
  chart            = "seldon-core-operator"
  version          = var.chart_versions["seldon_core_operator"]
  namespace        = "seldon-system"
  create_namespace = true
  wait             = true

  values = [yamlencode({
    istio = {
      enabled = true
    }
    usageMetrics = {
      enabled = false
    }
  })]

  depends_on = [helm_release.istiod, helm_release.keda]
}

resource "helm_release" "kube_prometheus_stack" {
  name             = "kube-prometheus-stack"
  repository       = "https://prometheus-community.github.io/helm-charts"
  chart            = "kube-prometheus-stack"
  version          = var.chart_versions["kube_prometheus_stack"]
  namespace        = var.monitoring_namespace
  create_namespace = true

  # Select every ServiceMonitor/PodMonitor, not only the chart's own, and scrape pods
  # that carry prometheus.io/* annotations (the model servers and Istio sidecars).
  # mlserve's PrometheusRules carry the release label the chart's rule selector wants;
  # Grafana's sidecar loads the dashboard ConfigMaps (grafana_dashboard: "1") of every
  # namespace, so each environment's dashboards live beside its endpoints.
  values = [yamlencode({
    grafana = {
      sidecar = {
        dashboards = {
          enabled         = true
          label           = "grafana_dashboard"
          labelValue      = "1"
          searchNamespace = "ALL"
        }
      }
    }
    prometheus = {
      prometheusSpec = {
        retention                               = var.prometheus_retention
        serviceMonitorSelectorNilUsesHelmValues = false
        podMonitorSelectorNilUsesHelmValues     = false
        additionalScrapeConfigs = [{
          job_name = "kubernetes-pods"
          kubernetes_sd_configs = [{
            role = "pod"
          }]
          relabel_configs = [
            {
              source_labels = ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"]
              action        = "keep"
              regex         = "true"
            },
            {
              source_labels = ["__meta_kubernetes_pod_annotation_prometheus_io_path"]
              action        = "replace"
              target_label  = "__metrics_path__"
              regex         = "(.+)"
            },
            {
              source_labels = ["__address__", "__meta_kubernetes_pod_annotation_prometheus_io_port"]
              action        = "replace"
              regex         = "([^:]+)(?::\\d+)?;(\\d+)"
              replacement   = "$1:$2"
              target_label  = "__address__"
            },
            {
              action = "labelmap"
              regex  = "__meta_kubernetes_pod_label_mlserve_io_(.+)"
            },
            {
              source_labels = ["__meta_kubernetes_namespace"]
              target_label  = "namespace"
            },
            {
              source_labels = ["__meta_kubernetes_pod_name"]
              target_label  = "pod"
            },
          ]
        }]
      }
    }
  })]
}

resource "helm_release" "nvidia_device_plugin" {
  name             = "nvidia-device-plugin"
  repository       = "https://nvidia.github.io/k8s-device-plugin"
  chart            = "nvidia-device-plugin"
  version          = var.chart_versions["nvidia_device_plugin"]
  namespace        = "nvidia-device-plugin"
  create_namespace = true

  values = [yamlencode({
    nodeSelector = {
      "nvidia.com/gpu.present" = "true"
    }
    tolerations = [{
      key      = "nvidia.com/gpu"
      operator = "Exists"
      effect   = "NoSchedule"
    }]
  })]
}

resource "helm_release" "dcgm_exporter" {
  name             = "dcgm-exporter"
  repository       = "https://nvidia.github.io/dcgm-exporter/helm-charts"
  chart            = "dcgm-exporter"
  version          = var.chart_versions["dcgm_exporter"]
  namespace        = "nvidia-device-plugin"
  create_namespace = true

  values = [yamlencode({
    nodeSelector = {
      "nvidia.com/gpu.present" = "true"
    }
    tolerations = [{
      key      = "nvidia.com/gpu"
      operator = "Exists"
      effect   = "NoSchedule"
    }]
    serviceMonitor = {
      enabled = true
    }
  })]

  depends_on = [helm_release.nvidia_device_plugin, helm_release.kube_prometheus_stack]
}
