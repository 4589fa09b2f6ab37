#!/usr/bin/env bash
# Set up everything on a fresh machine (Debian/Ubuntu, Python 3.10-3.12), idempotently.
#   scripts/bootstrap.sh demo   -> .venv with the runtime (numpy, onnxruntime, ...) for the demo
#   scripts/bootstrap.sh test   -> + training, evaluation and test tools, the ROS 2 Jazzy wheels
#                                  (real rclpy over Fast DDS), and, as root, Prometheus + Pushgateway
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-demo}"
PY="${PYTHON:-python3}"
VENV=.venv
PIP="$VENV/bin/python -m pip -q --disable-pip-version-check"

if [ ! -x "$VENV/bin/python" ]; then
  echo "bootstrap: creating $VENV with $($PY --version)" >&2
  "$PY" -m venv "$VENV"
fi

stamp="$VENV/.bootstrap-$what-$(cat setup.py scripts/bootstrap.sh | sha256sum | cut -c1-12)"
if [ -f "$stamp" ]; then
  exit 0
fi

if [ "$what" = "demo" ]; then
  echo "bootstrap: installing the package (runtime only)" >&2
  $PIP install -e . 2>&1 | grep -v "^WARNING: Location" >&2 || true
  "$VENV/bin/python" -c "import vibration_anomaly, onnxruntime" || { echo "bootstrap: install failed" >&2; exit 1; }
elif [ "$what" = "test" ]; then
  # Debian packages for the telemetry tests: real servers, started on loopback by the tests.
  if ! command -v prometheus >/dev/null || ! command -v prometheus-pushgateway >/dev/null || ! command -v promtool >/dev/null || ! command -v amtool >/dev/null || ! command -v victoria-metrics >/dev/null || ! command -v vmalert >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
      echo "bootstrap: apt-get install prometheus prometheus-pushgateway prometheus-alertmanager victoria-metrics" >&2
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq >&2
      apt-get install -y -qq --no-install-recommends prometheus prometheus-pushgateway prometheus-alertmanager victoria-metrics >&2
    else
      echo "bootstrap: not root: skipping apt-get of prometheus/prometheus-pushgateway/victoria-metrics (their tests will skip)" >&2
    fi
  fi
  echo "bootstrap: installing torch (CPU build), the package with [train,eval,test], ROS 2 Jazzy wheels" >&2
  # torch first and pinned: a plain 'torch' requirement would pull a multi-GB CUDA build.
  $PIP install torch==2.13.0 2>&1 | grep -v "^WARNING: Location" >&2 || true
  $PIP install -e '.[train,eval,test]' 2>&1 | grep -v "^WARNING: Location" >&2 || true
  # tensorrt-stubs depends on the tensorrt meta package, which downloads from a host we cannot reach.
  $PIP install --no-deps tensorrt-stubs 2>&1 | grep -v "^WARNING: Location" >&2 || true
  # The lean TensorRT runtime (installs and fails cleanly without a GPU) and NVML bindings: their
  # "no GPU" / "no driver" paths are tested for real.
  $PIP install tensorrt-lean-cu13 nvidia-ml-py 2>&1 | grep -v "^WARNING: Location" >&2 || true
  $PIP install -r requirements-ros.txt 2>&1 | grep -v "^WARNING: Location" >&2 || true
  "$VENV/bin/python" -c "import vibration_anomaly, onnxruntime, torch, rclpy, pytest" \
    || { echo "bootstrap: test environment incomplete" >&2; exit 1; }
else
  echo "usage: $0 demo|test" >&2
  exit 2
fi
touch "$stamp"
