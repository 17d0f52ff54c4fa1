#!/usr/bin/env bash
# Install the system programs mlserve's demo and tests use, when they are missing.
# As root on Debian we install them with apt-get; otherwise we say what to install.
set -euo pipefail

missing_apt=()
need() { # need BINARY DEBIAN_PACKAGE
  command -v "$1" >/dev/null 2>&1 || missing_apt+=("$2")
}

need prometheus prometheus
# headless Chromium: tests/report opens the rollout reports in a real browser
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing_apt+=(chromium)

# Terraform 1.x (HashiCorp's apt repository, not Debian's) and a local provider mirror with
# hashicorp/aws, which tests/deploy uses offline (MLSERVE_TF_PLUGIN_DIR, default /opt/tf-plugins).
if ! command -v terraform >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends gnupg curl lsb-release >/dev/null
    curl -fsSL https://apt.releases.hashicorp.com/gpg | gpg --dearmor --yes -o /usr/share/keyrings/hashicorp.gpg
    echo "deb [signed-by=/usr/share/keyrings/hashicorp.gpg] https://apt.releases.hashicorp.com $(lsb_release -cs) main" \
      >/etc/apt/sources.list.d/hashicorp.list
    apt-get update -qq && apt-get install -y -qq terraform >/dev/null
  else
    echo "mlserve needs Terraform 1.x: https://developer.hashicorp.com/terraform/install" >&2
    exit 1
  fi
fi
tf_mirror="${MLSERVE_TF_PLUGIN_DIR:-/opt/tf-plugins}"
if [ ! -d "$tf_mirror/registry.terraform.io/hashicorp/aws" ]; then
  tf_tmp="$(mktemp -d)"
  printf 'terraform {\n  required_providers {\n    aws = { source = "hashicorp/aws", version = "5.100.0" }\n  }\n}\n' >"$tf_tmp/main.tf"
  (cd "$tf_tmp" && terraform providers mirror -platform=linux_amd64 "$tf_mirror")
  rm -rf "$tf_tmp"
fi

# kubectl (with kustomize built in) from the Kubernetes apt repository: tests/render builds
# every rendered kubernetes folder with `kubectl kustomize` (no cluster needed).
if ! command -v kubectl >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends gnupg curl >/dev/null
    curl -fsSL https://pkgs.k8s.io/core:/stable:/v1.32/deb/Release.key | gpg --dearmor --yes -o /usr/share/keyrings/kubernetes.gpg
    echo "deb [signed-by=/usr/share/keyrings/kubernetes.gpg] https://pkgs.k8s.io/core:/stable:/v1.32/deb/ /" \
      >/etc/apt/sources.list.d/kubernetes.list
    apt-get update -qq && apt-get install -y -qq kubectl >/dev/null
  else
    echo "mlserve's tests need kubectl: https://kubernetes.io/docs/tasks/tools/" >&2
    exit 1
  fi
fi

if [ ${#missing_apt[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing with apt-get: ${missing_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing_apt[@]}" >/dev/null
  # Debian's package starts a system-wide prometheus on :9090; mlserve runs its own.
  if command -v systemctl >/dev/null 2>&1; then systemctl stop prometheus >/dev/null 2>&1 || true; fi
  pkill -x prometheus >/dev/null 2>&1 || true
else
  echo "mlserve needs these programs: ${missing_apt[*]}" >&2
  echo "install them with: sudo apt-get install ${missing_apt[*]}" >&2
  exit 1
fi
