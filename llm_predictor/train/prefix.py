"""Compute the prompt prefix a batch shares once and reuse it for every row (issue 18, "training throughput").

Every prompt of an anchor date starts with the same role, requirements, output format and preset pool
(:mod:`llm_predictor.data.prompts`: ~450-650 of its ~750-1000 tokens); a plain SFT step runs those tokens
through the model once per example. Here a micro-batch is split at the longest run of leading positions
that every row shares (same token, attended, no label):

1. the shared prefix runs once, batch 1, keeping its keys and values (``use_cache=True``; only the last
   position's logits are computed);
2. that cache is repeated over the batch (:meth:`transformers.DynamicCache.batch_repeat_interleave`, a
   differentiable ``repeat_interleave``) and the per-row suffixes run on top of it, with the full
   attention mask and positions continuing after the prefix.

The loss, its labels and TRL's metrics are computed on the suffix exactly as on the whole sequence (the
first suffix token is predicted from the prefix's last position, and it is always a prompt token, so no
labelled position is lost). Gradients flow through the cache into the prefix's activations, once for the
whole batch: the values and gradients are those of the plain step (``tests/.../test_prefix.py``), the
work is ``P + B * S`` tokens instead of ``B * (P + S)``.

:func:`group_by_key` orders a dataset into micro-batches whose rows share a key (the anchor date, hence the
preset pool) and of similar length (little padding), shuffled with a seed, so that a batch's shared prefix
is the whole date prefix; the trainer
then reads it in order (``train_sampling_strategy='sequential'``). ``SFTRunConfig.group_by_date`` and
``share_prefix`` switch the two apart, so the plain step on the same batches is the control.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

IGNORE_INDEX = -100  # the label of a position without loss (prompt, padding)
MIN_SHARED_PREFIX = 16  # shorter shared prefixes are not worth a second forward call


def shared_prefix_length(input_ids: Any, attention_mask: Any, labels: Any | None = None) -> int:
    """Length of the longest leading run of positions where every row has the same token and the same
    attention mask value (a left pad shared by all rows is shared too), ending at least one position before
    the first labelled one; at most ``T - 1`` (a suffix of at least one position remains). 0 for one row."""
    batch, length = input_ids.shape
    if batch < 2 or length < 2:
        return 0
    same = (input_ids == input_ids[:1]).all(dim=0) & (attention_mask == attention_mask[:1]).all(dim=0)
    differs = (~same).nonzero()
    prefix = int(differs[0, 0]) if len(differs) else length
    if labels is not None:
        # the first suffix position must be unlabelled: its token is predicted from the prefix's last
        # position, whose logits the suffix pass does not compute
        labelled = (labels != IGNORE_INDEX).any(dim=0).nonzero()
        if len(labelled):
            prefix = min(prefix, int(labelled[0, 0]) - 1)
    return max(0, min(prefix, length - 1))


def message_chars(row: dict[str, Any]) -> int:
    """Characters of a conversational row's messages (prompt and completion): its length for batching."""
    return sum(len(m["content"]) for col in ("prompt", "completion") for m in row.get(col) or [])


def split_shared_prefix(
    model: Any, inputs: dict[str, Any], min_prefix: int = MIN_SHARED_PREFIX
) -> dict[str, Any] | None:
    """``inputs`` rewritten to run the batch's shared prefix once (see the module docstring), or None
    when the shared prefix is shorter than ``min_prefix`` (the caller then runs the plain step).

    Args:
        model: the (PEFT-wrapped) causal LM; called here once on the prefix, with gradients.
        inputs: a collated batch with ``input_ids``, ``attention_mask`` and ``labels`` (right-padded).
        min_prefix: the shortest shared prefix worth splitting off.

    Returns:
        The suffix batch: ``input_ids`` / ``labels`` from the prefix length on, the full ``attention_mask``,
        ``position_ids`` continuing after the prefix and ``past_key_values`` holding the prefix for every row;
        other keys of ``inputs`` are kept.
    """
    import torch

    ids, mask, labels = inputs["input_ids"], inputs.get("attention_mask"), inputs.get("labels")
    if mask is None or "past_key_values" in inputs or "position_ids" in inputs:
        return None
    prefix = shared_prefix_length(ids, mask, labels)
    if prefix < min_prefix:
        return None
    batch, length = ids.shape
    head = model(
        input_ids=ids[:1, :prefix], attention_mask=mask[:1, :prefix], use_cache=True, logits_to_keep=1
    )
    cache = head.past_key_values
    cache.batch_repeat_interleave(batch)
    out = dict(inputs)
    out["input_ids"] = ids[:, prefix:]
    if labels is not None:
        out["labels"] = labels[:, prefix:]
    out["position_ids"] = torch.arange(prefix, length, device=ids.device).expand(batch, -1)
    out["past_key_values"] = cache
    return out


def prefix_sharing_sft_trainer(share: bool = True) -> type:
    """``trl.SFTTrainer`` whose training loss runs each micro-batch's shared prompt prefix once.

    Evaluation, gradient checkpointing (its recomputed forward would append to the cache twice) and batches
    without a long enough shared prefix take TRL's plain step; ``share=False`` always does (the control of
    ``bench/train.py``). Either way each training micro-batch logs ``tokens_computed``: the positions the
    model ran, ``P + B * S`` shared or ``B * (P + S)`` plain, padding included.
    """
    from trl import SFTTrainer

    class PrefixSharingSFTTrainer(SFTTrainer):
        share_prefix: bool = share
        min_shared_prefix: int = MIN_SHARED_PREFIX

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # type: ignore[no-untyped-def]
            shared = None
            if self.share_prefix and model.training and not self.args.gradient_checkpointing:
                shared = split_shared_prefix(model, inputs, self.min_shared_prefix)
            if model.training:
                batch, length = inputs["input_ids"].shape
                prefix = 0 if shared is None else length - shared["input_ids"].shape[1]
                computed = prefix + batch * (length - prefix)
                self._metrics["train"]["tokens_computed"].append(float(computed))
            return super().compute_loss(
                model,
                inputs if shared is None else shared,
                return_outputs=return_outputs,
                num_items_in_batch=num_items_in_batch,
            )

    return PrefixSharingSFTTrainer


def prefix_sharing_grpo_trainer(share: bool = True) -> type:
    """``trl.GRPOTrainer`` whose log-probabilities run each prompt once for all of its completions.

    TRL scores a micro-batch of completions as ``model(prompt + completion)`` per row, so a prompt of ~1000
    tokens runs once per completion of its group (``num_generations``). Here the rows are cut into runs of
    the same prompt (consecutive rows, as TRL's sampler repeats each prompt ``num_generations`` times), and
    each run's shared prefix, the whole left-padded prompt, runs once (:func:`split_shared_prefix`), with
    gradients. Multimodal inputs, the MoE aux loss and ``share=False`` take TRL's own path.
    """
    import torch
    from trl import GRPOTrainer

    class PrefixSharingGRPOTrainer(GRPOTrainer):
        share_prefix: bool = share

        def _get_per_token_logps_and_entropies(  # type: ignore[no-untyped-def]
            self,
            model,
            input_ids,
            attention_mask,
            logits_to_keep,
            batch_size=None,
            compute_entropy=False,
            compute_aux_loss=False,
            **multimodal,
        ):
            if not self.share_prefix or compute_aux_loss or any(v is not None for v in multimodal.values()):
                return super()._get_per_token_logps_and_entropies(
                    model,
                    input_ids,
                    attention_mask,
                    logits_to_keep,
                    batch_size,
                    compute_entropy,
                    compute_aux_loss,
                    **multimodal,
                )
            logps, entropies = [], []
            for start, end in same_prompt_runs(input_ids, attention_mask, logits_to_keep):
                ids, mask = input_ids[start:end], attention_mask[start:end]
                labels = ids.masked_fill(mask == 0, IGNORE_INDEX)
                labels[:, :-logits_to_keep] = IGNORE_INDEX  # only the completion is scored, as TRL does
                inputs = {"input_ids": ids, "attention_mask": mask, "labels": labels}
                with self.accelerator.autocast():
                    shared = split_shared_prefix(model, inputs, MIN_SHARED_PREFIX) or inputs
                    outputs = model(**shared, fused_lm_head=True)
                logps.append(outputs.log_probs[:, -logits_to_keep:])
                if compute_entropy:
                    entropies.append(outputs.entropy[:, -logits_to_keep:])
            return (torch.cat(logps, dim=0), torch.cat(entropies, dim=0) if compute_entropy else None, None)

    return PrefixSharingGRPOTrainer


def same_prompt_runs(input_ids: Any, attention_mask: Any, completion_length: int) -> list[tuple[int, int]]:
    """``(start, end)`` row ranges of consecutive rows whose prompt part (all but the last
    ``completion_length`` positions: tokens and mask) is identical."""
    prompt_ids = input_ids[:, :-completion_length]
    prompt_mask = attention_mask[:, :-completion_length]
    runs: list[tuple[int, int]] = []
    start = 0
    for row in range(1, input_ids.shape[0] + 1):
        if row == input_ids.shape[0] or not (
            bool((prompt_ids[row] == prompt_ids[start]).all())
            and bool((prompt_mask[row] == prompt_mask[start]).all())
        ):
            runs.append((start, row))
            start = row
    return runs


def group_by_key(
    dataset: Any, key: str, batch_size: int, seed: int, lengths: Sequence[int] | None = None
) -> Any:
    """``dataset`` reordered into runs of ``batch_size`` rows with the same ``key`` (rows shuffled within a
    key, full runs shuffled across keys, both seeded), read in order by batches of ``batch_size``. With
    ``lengths`` (one per row), a key's rows are sorted by length before they are cut into runs, so a batch
    holds rows of similar length and little padding. Every row is kept: each key's remainder (fewer than
    ``batch_size`` rows) goes to the end, where batches may mix keys."""
    rng = random.Random(seed)
    by_key: dict[Any, list[int]] = defaultdict(list)
    for i, value in enumerate(dataset[key]):
        by_key[value].append(i)
    runs: list[list[int]] = []
    tail: list[int] = []
    for value in sorted(by_key):
        rows = by_key[value]
        rng.shuffle(rows)
        if lengths is not None:
            rows.sort(key=lambda i: lengths[i])  # stable: ties stay shuffled
        full = len(rows) - len(rows) % batch_size
        runs.extend(rows[i : i + batch_size] for i in range(0, full, batch_size))
        tail.extend(rows[full:])
    rng.shuffle(runs)
    return dataset.select([i for run in runs for i in run] + tail)
