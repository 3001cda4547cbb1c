#!/bin/bash
# vLLM on CPU: engine core + model in their own processes (vLLM's default, VLLM_ENABLE_V1_MULTIPROCESSING=1)
# against in this process (=0, adprior's default since EngineConfig.vllm_in_process), paired and repeated:
# the same 16 users, the same model, bench/infer.py's vllm variant, alternating. Writes
# bench/results/infer_inproc.md (each run's row, headed by its command and the load average before it).
#
# Usage: bash bench/infer_inproc.sh EXAMPLES DATA DATE MODEL [REPEATS]
set -euo pipefail
cd "$(dirname "$0")/.."
examples=$1 data=$2 day=$3 model=$4 repeats=${5:-2}
tmp=$(mktemp -d)
out=bench/results/infer_inproc.md
{
  echo "# vLLM on CPU: engine core in its own process vs in process"
  echo
  echo "- command: \`bash bench/infer_inproc.sh $*\` (git commit $(git rev-parse HEAD), $(nproc) cores)"
  echo "- each run: \`VLLM_ENABLE_V1_MULTIPROCESSING=<mp> .venv/bin/python bench/infer.py --examples $examples --data $data --date $day --users 16 --variants vllm --model $model\`"
  echo "- mp=1: vLLM's default (EngineCore and Worker processes, shared-memory queues whose readers busy-poll); mp=0: one process"
  echo
  echo "| mp | repeat | load avg before | s | users/s | gen tok/s | generated tokens | load s |"
  echo "|---|---|---|---|---|---|---|---|"
} > "$out"
for rep in $(seq "$repeats"); do
  for mp in 1 0; do
    load=$(cut -d' ' -f1 /proc/loadavg)
    VLLM_ENABLE_V1_MULTIPROCESSING=$mp .venv/bin/python bench/infer.py --examples "$examples" --data "$data" \
      --date "$day" --users 16 --variants vllm --model "$model" \
      --json "$tmp/r.json" --md "$tmp/r.md" > "$tmp/log" 2>&1
    .venv/bin/python - "$tmp/r.json" "$mp" "$rep" "$load" >> "$out" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"][0]
print(f"| {sys.argv[2]} | {sys.argv[3]} | {sys.argv[4]} | {r['seconds']} | {r['users_per_s']} | "
      f"{r['gen_tokens_per_s']} | {r['generated_tokens']} | {r['load_s']} |")
PY
  done
done
rm -rf "$tmp"
cat "$out"
