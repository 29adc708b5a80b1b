#!/usr/bin/env bash
# The issue-12 benchmarks against a bigger model on a GPU: the same scripts as on CPU, pointed
# at a running vLLM with --base-url. Needs `vllm` (CUDA build) importable by $VLLM_PYTHON and
# the model in a local folder (nothing is downloaded). See docs/gpu.md.
#
#   MODEL=/models/Qwen2.5-Coder-7B-Instruct benchmarks/gpu/real_model.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${MODEL:?set MODEL to a local checkpoint folder}"
VLLM_PYTHON=${VLLM_PYTHON:-python3}
PORT=${PORT:-8011}
BLOCK=${BLOCK:-16}
NAME=$(basename "$MODEL")
LOG=$(mktemp -t vllm-gpu-XXXX.log)
HF_HUB_OFFLINE=1 "$VLLM_PYTHON" -m vllm.entrypoints.openai.api_server --model "$MODEL" \
    --served-model-name "$NAME" --port "$PORT" --enable-prefix-caching \
    --enable-prompt-tokens-details --block-size "$BLOCK" --max-model-len 8192 >"$LOG" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
until grep -q "Application startup complete" "$LOG"; do
    kill -0 $SERVER 2>/dev/null || { tail -20 "$LOG"; exit 1; }
    sleep 1
done
URL=http://127.0.0.1:$PORT/v1
until curl -sf "$URL/models" >/dev/null; do sleep 0.2; done
PY=${PY:-.venv/bin/python}
"$PY" benchmarks/vllm_prefix_cache.py --base-url "$URL" --model "$NAME" --block-size "$BLOCK" \
    --out benchmarks/results/gpu_vllm_prefix_cache_real.json
"$PY" benchmarks/model_tasks.py --base-url "$URL" --model "$NAME" --block-size "$BLOCK" \
    --max-output-tokens 1024 --max-turns 12 --out benchmarks/results/gpu_model_tasks.json
