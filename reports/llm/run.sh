#!/usr/bin/env bash
# Paper Tables 2-4 analogues on CPU at a stated small size (issue 3), for the simulated world and
# amazon-scientific. Every step is one `adprior` command; a step whose output already exists is skipped,
# so the script resumes after an interruption. The report (reports/llm/report.md) copies each eval's
# command and each trained model's command from the files they wrote.
#
#   bash reports/llm/run.sh            # everything, most important rows first (3 h or more on 2 CPU cores)
#   ONLY=world bash reports/llm/run.sh # one dataset
#
# Sizes (the same for both datasets): ROWS labelled eval rows (a seeded sample of the eval split, the same
# rows in every eval), user prompt budget BUDGET tokens, SFT = SFT_STEPS LoRA steps of 4 rows, GRPO =
# GRPO_STEPS steps of 2 prompts x 4 completions (forward/backward 2 completions at a time) starting from the 20-advertiser (XML) SFT model.
set -euo pipefail

main() {  # the whole script is parsed before it runs, so editing this file mid-run is safe
cd "$(dirname "$0")/../.."
A=.venv/bin/adprior
ROWS=${ROWS:-48}
BUDGET=${BUDGET:-300}
SFT_STEPS=${SFT_STEPS:-30}
GRPO_STEPS=${GRPO_STEPS:-8}
ONLY=${ONLY:-}
BASE=$(.venv/bin/python -c 'from llm_predictor.base_model import ensure_base_model; print(ensure_base_model())')

step() {  # step OUT_FILE COMMAND...: run COMMAND unless OUT_FILE exists
  local done_file=$1
  shift
  if [ -e "$done_file" ]; then echo "== skip (done): $done_file"; else echo "== $*"; "$@"; fi
}

# Data: the first commands of reports/baselines/report.md.
if [ ! -d data/cal/examples ]; then
  $A simulate --out data/cal/world --users 5000 --workers 2
  $A compile --data data/cal/world --date 2026-06-15 --date 2026-06-22 --out data/cal/examples --tokenizer none
fi
if [ ! -d data/amazon_examples_730 ]; then
  $A import-amazon --inter ../shared/data/amazon-scientific/Scientific.inter.json \
    --items ../shared/data/amazon-scientific/Scientific.item.json --out data/amazon
  $A compile --data data/amazon --date 2026-06-30 --out data/amazon_examples_730 --conversion-lookback-days 730 \
    --tokenizer none
fi

datasets=(world amazon)
[ -n "$ONLY" ] && datasets=("$ONLY")
paths() {  # paths DATASET -> EX DATA M E
  case $1 in
    world) EX=data/cal/examples DATA=data/cal/world ;;
    amazon) EX=data/amazon_examples_730 DATA=data/amazon ;;
    *) echo "unknown dataset $1" >&2; exit 2 ;;
  esac
  M=runs/models/llm_$1 E=runs/eval/llm_$1
}
common() { echo --examples "$EX" --data "$DATA" --max-examples "$ROWS" --budget-tokens "$BUDGET"; }

# 1. Table 3, 20-advertiser rows: zero-shot vs SFT (inference prompt, XML target) vs SFT + GRPO, constrained
#    greedy (what `adprior infer` serves), with the non-LLM baselines and the LightGBM reranker on the same rows.
table3_xml() {
  local ds=$1
  paths "$ds"
  step "$M/sft20/train_summary.json" $A train sft --examples "$EX" --out "$M/sft20" --template grpo_text \
    --max-steps "$SFT_STEPS" --batch-size 4 --lora --lr 2e-4 --budget-tokens "$BUDGET"
  step "$M/grpo/train_summary.json" $A train grpo --examples "$EX" --model "$M/sft20" --out "$M/grpo" \
    --max-steps "$GRPO_STEPS" --batch-size 2 --num-generations 4 --micro-batch-size 2 --max-completion-length 224 \
    --lora --lr 5e-5 \
    --budget-tokens "$BUDGET"
  # shellcheck disable=SC2046
  step "$E/table3_xml/eval.json" $A eval $(common) --model "$BASE" --model "$M/sft20" --model "$M/grpo" \
    --template grpo_text --constrained --max-new-tokens 256 --out "$E/table3_xml"
}

# 2. Table 2: zero-shot, unconstrained, without and with an explicit reasoning step.
table2() {
  local ds=$1
  paths "$ds"
  # shellcheck disable=SC2046
  step "$E/table2/eval.json" $A eval $(common) --model "$BASE" --template grpo_text --max-new-tokens 256 --no-gbdt \
    --out "$E/table2"
  # shellcheck disable=SC2046
  step "$E/table2_reasoning/eval.json" $A eval $(common) --model "$BASE" --template grpo_text_reasoning \
    --max-new-tokens 384 --no-gbdt --out "$E/table2_reasoning"
}

# 3. Table 3, 1-advertiser row: SFT on the label name (A.1); 5 constrained beams = 5 candidates (R@1, R@5).
table3_single() {
  local ds=$1
  paths "$ds"
  step "$M/sft1/train_summary.json" $A train sft --examples "$EX" --out "$M/sft1" --template sft_text \
    --max-steps "$SFT_STEPS" --batch-size 4 --lora --lr 2e-4 --budget-tokens "$BUDGET"
  # shellcheck disable=SC2046
  step "$E/table3_single/eval.json" $A eval $(common) --model "$BASE" --model "$M/sft1" --template sft_text \
    --constrained --strategy beam --k 5 --max-new-tokens 16 --no-gbdt --out "$E/table3_single"
}

# 4. Table 4: feature ablation (drop a group, shuffle, reverse) for zero-shot and the fine-tuned 1-advertiser model.
table4() {
  local ds=$1
  paths "$ds"
  # shellcheck disable=SC2046
  step "$E/table4/eval.json" $A eval $(common) --model "$BASE" --model "$M/sft1" --template sft_text --constrained \
    --max-new-tokens 16 --no-gbdt --ablate drop:active_advertisers --ablate drop:offsite_urls \
    --ablate drop:onsite_searches --ablate drop:profile --ablate shuffle --out "$E/table4"
}

# 5. Table 3 last row (issue 7): SID-enabled vs text-only, 1-advertiser prompts, the same rows and settings.
#    RQ-VAE SIDs -> user SID sequences in the examples -> CPT phase 1 (SID embeddings only) -> phase 2 (all
#    weights) -> SFT on sft_sid; the text-only SFT model's predictions (step 3) are scored beside it, paired.
table3_sid() {
  local ds=$1
  paths "$ds"
  SX=data/sid_examples_$ds
  step "runs/sid/$ds/sid_map.parquet" $A sid build --data "$DATA" --out "runs/sid/$ds"
  step "$SX/examples" $A sid attach --examples "$EX" --data "$DATA" --sids "runs/sid/$ds" --out "$SX"
  step "$M/cpt1/config.json" $A sid cpt --phase 1 --sids "runs/sid/$ds" --examples "$SX" --out "$M/cpt1" \
    --max-steps "$SFT_STEPS"
  step "$M/cpt2/config.json" $A sid cpt --phase 2 --model "$M/cpt1" --sids "runs/sid/$ds" --examples "$SX" \
    --out "$M/cpt2" --max-steps "$SFT_STEPS"
  step "$M/sft1_sid/train_summary.json" $A train sft --examples "$SX" --model "$M/cpt2" --out "$M/sft1_sid" \
    --template sft_sid --max-steps "$SFT_STEPS" --batch-size 4 --lora --lr 2e-4 --budget-tokens "$BUDGET"
  # shellcheck disable=SC2046
  step "$E/table3_sid/eval.json" $A eval --examples "$SX" --data "$DATA" --max-examples "$ROWS" \
    --budget-tokens "$BUDGET" --model "$M/sft1_sid" --template sft_sid --constrained --strategy beam --k 5 \
    --max-new-tokens 16 --no-gbdt --predictions "text-only sft1=$E/table3_single/predictions_llm_sft1.parquet" \
    --out "$E/table3_sid"
}

# Order: the rows the issues' "done when" need first (Table 3 on both datasets, then the SID row), then
# Table 4 (ablations of the fine-tuned model) and Table 2 (unconstrained zero-shot, which at 135M never writes
# the answer format), so an interrupted run leaves the most important rows measured.
for stage in table3_xml table3_single table3_sid table4 table2; do
  for ds in "${datasets[@]}"; do "$stage" "$ds"; done
done

# Report: whatever runs exist, in table order.
runs=()
for t in table2 table2_reasoning table3_xml table3_single table3_sid table4; do
  for ds in world amazon; do [ -e "runs/eval/llm_$ds/$t/eval.json" ] && runs+=(--run "runs/eval/llm_$ds/$t"); done
done
$A report "${runs[@]}" --out reports/llm --intro reports/llm/intro.md --title "adprior: paper Tables 2-4 at CPU size"
for f in runs/eval/llm_*/*/eval.json; do
  d=$(dirname "$f"); cp "$f" "reports/llm/$(basename "$(dirname "$d")")_$(basename "$d").eval.json"
done
}

main "$@"
