"""The shared prompt prefix run once per batch (llm_predictor.train.prefix): same loss, same gradients."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from datasets import Dataset

from llm_predictor.train.common import load_tokenizer
from llm_predictor.train.config import lora_config
from llm_predictor.train.prefix import IGNORE_INDEX, group_by_key, same_prompt_runs, shared_prefix_length
from llm_predictor.train.sft import build_sft_trainer, prepare_sft_data
from tests.llm_predictor.train.test_sft import sft_cfg


def test_shared_prefix_length_stops_at_difference_padding_and_labels() -> None:
    ids = torch.tensor([[5, 6, 7, 8, 9], [5, 6, 7, 1, 2]])
    mask = torch.ones_like(ids)
    assert shared_prefix_length(ids, mask) == 3
    mask[1, 2] = 0  # a position padded in one row only is not shared
    assert shared_prefix_length(ids, mask) == 2
    left = torch.tensor([[0, 0, 5, 6, 7], [0, 0, 5, 6, 8]])
    left_mask = torch.tensor([[0, 0, 1, 1, 1], [0, 0, 1, 1, 1]])
    assert shared_prefix_length(left, left_mask) == 4  # a left pad every row has is shared
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[:, 2] = 7  # a labelled position and the one before it stay in the suffix
    assert shared_prefix_length(ids, torch.ones_like(ids), labels) == 1
    same = torch.tensor([[5, 6, 7], [5, 6, 7]])
    assert shared_prefix_length(same, torch.ones_like(same)) == 2  # a suffix of one position remains
    assert shared_prefix_length(ids[:1], mask[:1]) == 0  # nothing to share in a batch of one


def test_group_by_key_keeps_every_row_in_batches_of_one_key() -> None:
    keys = ["a"] * 7 + ["b"] * 5 + ["c"] * 2
    ds = Dataset.from_dict({"k": keys, "i": list(range(len(keys)))})
    grouped = group_by_key(ds, "k", batch_size=2, seed=3)
    assert sorted(grouped["i"]) == list(range(len(keys)))
    order = grouped["k"]
    full_batches = (7 // 2) + (5 // 2) + (2 // 2)
    for b in range(full_batches):
        assert len(set(order[2 * b : 2 * b + 2])) == 1, order
    assert group_by_key(ds, "k", 2, seed=3)["i"] == grouped["i"]  # seeded
    assert group_by_key(ds, "k", 2, seed=4)["i"] != grouped["i"]


def _grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("lora", [True, False])
def test_shared_prefix_step_equals_plain_step(
    examples_dir: Path, tiny_model: Path, tmp_path: Path, lora: bool
) -> None:
    from trl import SFTTrainer

    cfg = sft_cfg(
        examples_dir,
        tiny_model,
        tmp_path,
        lora=lora_config(r=4) if lora else None,
        per_device_train_batch_size=4,
    )
    tok = load_tokenizer(str(tiny_model))
    dataset, _ = prepare_sft_data(cfg, tok)
    trainer = build_sft_trainer(cfg, dataset, tok)
    batch = next(iter(trainer.get_train_dataloader()))
    prefix = shared_prefix_length(batch["input_ids"], batch["attention_mask"], batch["labels"])
    assert prefix > 100  # the template's role, requirements and pool
    assert (batch["attention_mask"].sum(1) - prefix).min() > 0  # every row has its own suffix
    model = trainer.model
    model.train()
    n_items = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())

    plain = SFTTrainer.compute_loss(trainer, model, dict(batch), num_items_in_batch=n_items)
    plain.backward()
    plain_grads = _grads(model)
    model.zero_grad()
    shared = trainer.compute_loss(model, dict(batch), num_items_in_batch=n_items)
    shared.backward()
    shared_grads = _grads(model)

    assert type(trainer).__name__ == "PrefixSharingSFTTrainer"
    assert torch.allclose(plain, shared, rtol=1e-5, atol=1e-6), (plain.item(), shared.item())
    assert plain_grads.keys() == shared_grads.keys() and plain_grads
    for name, grad in plain_grads.items():
        assert torch.allclose(grad, shared_grads[name], rtol=1e-4, atol=1e-6), name


def test_group_by_key_with_lengths_batches_similar_lengths() -> None:
    lengths = [9, 1, 8, 2, 7, 3, 6, 4]
    ds = Dataset.from_dict({"k": ["a"] * 8, "i": list(range(8))})
    grouped = group_by_key(ds, "k", batch_size=2, seed=0, lengths=lengths)
    batches = [sorted(lengths[i] for i in grouped["i"][b : b + 2]) for b in range(0, 8, 2)]
    assert sorted(batches) == [[1, 2], [3, 4], [6, 7], [8, 9]]


def test_same_prompt_runs() -> None:
    ids = torch.tensor([[0, 5, 6, 1], [0, 5, 6, 2], [7, 5, 6, 1], [7, 5, 6, 3], [0, 5, 6, 9]])
    mask = torch.ones_like(ids)
    assert same_prompt_runs(ids, mask, completion_length=1) == [(0, 2), (2, 4), (4, 5)]
    mask[1, 0] = 0  # a different padding is a different prompt
    assert same_prompt_runs(ids, mask, completion_length=1) == [(0, 1), (1, 2), (2, 4), (4, 5)]


def test_grpo_logps_with_the_prompt_run_once_equal_trls(
    examples_dir: Path, tiny_model: Path, tmp_path: Path
) -> None:
    from trl import GRPOTrainer

    from llm_predictor.train.config import GRPORunConfig, grpo_config
    from llm_predictor.train.grpo import build_grpo_trainer, prepare_grpo_data
    from llm_predictor.train.rewards import paper_reward

    cfg = GRPORunConfig(
        grpo=grpo_config(batch_size=2, num_generations=2, output_dir=tmp_path, max_steps=1),
        examples=examples_dir,
        model=tiny_model,
        lora=lora_config(r=4),
        max_prompt_length=768,
        budget_tokens=64,
    )
    tok = load_tokenizer(str(tiny_model), padding_side="left")
    dataset, _ = prepare_grpo_data(cfg, tok)
    trainer = build_grpo_trainer(cfg, dataset, tok, reward_funcs=[paper_reward])
    assert type(trainer).__name__ == "PrefixSharingGRPOTrainer"
    # two prompts of different lengths (left-padded), two completions each, as TRL lays them out
    texts = [
        tok.apply_chat_template(dataset[i]["prompt"], tokenize=False, add_generation_prompt=True)
        for i in (0, 1)
    ]
    texts[1] = texts[1][: len(texts[1]) // 2] + texts[1][len(texts[1]) // 2 + 60 :]  # a shorter prompt
    prompts = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    assert (prompts["attention_mask"] == 0).any()  # one of them is padded
    completions = torch.tensor([[11, 12, 13, 2], [11, 14, 2, 2], [15, 16, 17, 18], [15, 2, 2, 2]])
    completion_mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 0, 0]])
    rows = [0, 0, 1, 1]
    input_ids = torch.cat([prompts["input_ids"][rows], completions], dim=1)
    mask = torch.cat([prompts["attention_mask"][rows], completion_mask], dim=1)
    model = trainer.model
    model.train()

    def run(fn) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        model.zero_grad()
        logps, ent, _ = fn(trainer, model, input_ids, mask, completions.shape[1], compute_entropy=True)
        (logps * completion_mask).sum().backward()
        return logps.detach(), ent.detach(), _grads(model)

    plain = run(GRPOTrainer._get_per_token_logps_and_entropies)
    shared = run(type(trainer)._get_per_token_logps_and_entropies)
    assert torch.allclose(plain[0] * completion_mask, shared[0] * completion_mask, atol=1e-5)
    assert torch.allclose(plain[1] * completion_mask, shared[1] * completion_mask, atol=1e-5)
    assert plain[2].keys() == shared[2].keys() and plain[2]
    for name, grad in plain[2].items():
        assert torch.allclose(grad, shared[2][name], rtol=1e-4, atol=1e-6), name
