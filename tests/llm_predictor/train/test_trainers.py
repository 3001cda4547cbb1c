"""Real TRL SFT and GRPO steps on CPU with a tiny randomly initialised Llama (llm_predictor.train.trainers).

Choices that keep this file fast on 2 busy cores:

* The model is a 2-layer Llama with hidden size 32 (~1.6 M parameters, almost all in the tied 49,152 x 32
  embedding), built in the test; only the *tokenizer* comes from the real SmolLM2 folder
  (``ensure_base_model()``), so that TRL applies the real ChatML chat template.
* The examples are 10 hand-built rows (8 labelled train rows, one unlabelled, one eval row) written in the
  compile output layout (``examples/anchor_date=.../``, ``preset_pool/anchor_date=.../``), so the runs also
  read them through ``load_run_examples``.
* The preset pool has 10 names and ``budget_tokens=64`` cuts the per-user part. The shared prefix of the
  templates cannot be cut (sft_text ~300 SmolLM2 tokens, grpo_text ~570), so SFT uses ``max_length=512``
  and GRPO ``max_prompt_length=768``; sequences that long cost little with this model.
* 2 optimizer steps of batch 2 (SFT), 1-2 steps of 2 prompts x 2 generations x 16 tokens (GRPO).
"""

from __future__ import annotations

import json
import math
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from adprior.contracts import EXAMPLE_SCHEMA, PRESET_POOL_SCHEMA
from llm_predictor.base_model import ensure_base_model
from llm_predictor.data.parsing import parse_answer
from llm_predictor.train.datasets import grpo_dataset, sft_dataset, teacher_list
from llm_predictor.train.rewards import paper_reward
from llm_predictor.train.trainers import (
    GRPORunConfig,
    SFTRunConfig,
    build_sft_trainer,
    grpo_batch_args,
    load_tokenizer,
    prepare_sft_data,
    score_labelled_only,
    train_grpo,
    train_sft,
)

X = date(2026, 6, 22)
POOL = [
    "Nike",
    "Sephora",
    "IKEA",
    "Target",
    "Walmart",
    "Adidas",
    "Apple",
    "Best Buy",
    "Home Depot",
    "Ulta Beauty",
]
LABELS = ["Nike", "Sephora", "IKEA", "Adidas", "Target", "Apple", "Nike", "Ulta Beauty"]


def _row(i: int, label: str | None, split: str = "train") -> dict:
    return {
        "user_id": 100 + i,
        "split": split,
        "in_v0": i % 2 == 0,
        "label_advertiser_id": None if label is None else POOL.index(label) + 1,
        "label_advertiser_name": label,
        "label_ts": None,
        "label_conversion_type": None if label is None else "purchase",
        "gender": ["female", "male"][i % 2],
        "age": 20 + i,
        "user_state": ["core", "casual", "new"][i % 3],
        "country": "US",
        "active_advertisers": ["Adidas", "Sephora"][: i % 3],
        "active_advertiser_ids": [6, 2][: i % 3],
        "attributed_conversions": [f"running shoes model {i}", "lipstick set"],
        "matched_conversions": ["yoga mat"],
        "onsite_searches": ["trail running shoes", f"gift idea {i}"],
        "offsite_searches": ["best marathon shoes"],
        "offsite_urls": [f"https://www.nike.com/t/pegasus-{i}"],
        "top_categories": ["Apparel > Shoes", "Beauty > Makeup"],
        "top_brands": ["Adidas", "Nike"],
        "n_attributed": 2,
        "n_matched": 1,
        "last_event_ts": None,
    }


def example_rows() -> list[dict]:
    rows = [_row(i, label) for i, label in enumerate(LABELS)]
    rows.append(_row(8, None))  # unlabelled: dropped
    rows.append(_row(9, "IKEA", split="eval"))  # eval split: not trained on
    return rows


@pytest.fixture(scope="module")
def examples_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("examples")
    part = f"anchor_date={X.isoformat()}"
    schema = pa.schema([f for f in EXAMPLE_SCHEMA if f.name != "anchor_date"])
    (out / "examples" / part).mkdir(parents=True)
    pq.write_table(
        pa.Table.from_pylist(example_rows(), schema=schema), out / "examples" / part / "part-0.parquet"
    )
    pool_schema = pa.schema([f for f in PRESET_POOL_SCHEMA if f.name != "anchor_date"])
    pool = [
        {"rank": k + 1, "advertiser_id": k + 1, "name": n, "revenue": 100.0 - k} for k, n in enumerate(POOL)
    ]
    (out / "preset_pool" / part).mkdir(parents=True)
    pq.write_table(
        pa.Table.from_pylist(pool, schema=pool_schema), out / "preset_pool" / part / "part-0.parquet"
    )
    return out


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    import torch
    from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny-llama")
    tok = AutoTokenizer.from_pretrained(str(ensure_base_model()))  # the real tokenizer and chat template
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id
    )
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out


def sft_cfg(examples_dir: Path, model: Path, out: Path, **kw) -> SFTRunConfig:
    base = {
        "examples": examples_dir,
        "model": model,
        "output_dir": out,
        "max_steps": 2,
        "per_device_train_batch_size": 2,
        "max_length": 512,
        "budget_tokens": 64,
        "learning_rate": 1e-3,
        "disable_tqdm": True,
    }
    return SFTRunConfig(**{**base, **kw})


def _reload(folder: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(folder))


# ---------------------------------------------------------------------------------------------------
# Datasets (no training)
# ---------------------------------------------------------------------------------------------------


def test_datasets_formats() -> None:
    df = pd.DataFrame([{**r, "anchor_date": X} for r in example_rows()])
    ds = sft_dataset(df, {X: POOL})
    assert len(ds) == 9  # 8 train + 1 eval labelled rows; the unlabelled one is dropped
    assert ds[0]["prompt"][0]["role"] == "user" and ds[0]["prompt"][0]["content"].startswith("#Role")
    assert ds[0]["completion"] == [{"role": "assistant", "content": "Nike"}]
    assert ds[0]["anchor_date"] == X.isoformat() and ds[0]["user_id"] == 100

    ds20 = sft_dataset(df, {X.isoformat(): POOL}, template="sft_text_20")
    names = ds20[2]["completion"][0]["content"].split("|")  # row 2: label IKEA, active Adidas, Sephora
    assert (
        names[:3] == ["IKEA", "Adidas", "Sephora"]
        and len(names) == len(POOL)
        and len(set(names)) == len(names)
    )
    popular = [f"Popular {k}" for k in range(30)]
    assert len(teacher_list("Nike", ["nike", "Adidas"], popular)) == 20
    assert teacher_list("Nike", ["nike", "Adidas"], popular)[:3] == ["Nike", "Adidas", "Popular 0"]

    # XML SFT (the GRPO warm start): the inference prompt, the XML answer as target, parseable by the reward.
    xml = sft_dataset(df, {X: POOL}, template="grpo_text")
    target = xml[2]["completion"][0]["content"]
    assert "<advertiser_names>" in xml[2]["prompt"][0]["content"] and target.startswith("<answer>")
    parsed = parse_answer(target)
    assert parsed.status == "ok" and parsed.advertisers[:3] == ["IKEA", "Adidas", "Sephora"]
    assert parsed.interests == ["Apparel Shoes", "Beauty Makeup"]  # ">" is markup: sanitised away
    # label first (R_match 0.1 * 19 + 2 = 3.9), 10 names (P_len 2.0), 2 interests (P_len 1.3)
    assert paper_reward([target], label_advertiser_name=["IKEA"]) == [pytest.approx(3.9 - 2.0 - 1.3)]

    g = grpo_dataset(df, POOL)
    assert set(g.column_names) >= {"prompt", "label_advertiser_name", "user_id"}
    assert "<advertiser_names>" in g[0]["prompt"][0]["content"] and g[0]["label_advertiser_name"] == "Nike"
    with pytest.raises(KeyError):
        sft_dataset(df, {date(2020, 1, 1): POOL})


def test_grpo_batch_args() -> None:
    assert grpo_batch_args(4, 4, None) == {
        "per_device_train_batch_size": 16,
        "gradient_accumulation_steps": 1,
        "generation_batch_size": 16,
        "num_generations": 4,
    }
    assert grpo_batch_args(4, 4, 8)["gradient_accumulation_steps"] == 2
    with pytest.raises(ValueError):
        grpo_batch_args(2, 2, 3)
    with pytest.raises(ValueError):
        grpo_batch_args(2, 1, None)


def test_length_guard_drops_rows(examples_dir: Path, tiny_model: Path, tmp_path: Path) -> None:
    tok = load_tokenizer(str(tiny_model))
    ds, stats = prepare_sft_data(sft_cfg(examples_dir, tiny_model, tmp_path, max_length=None), tok)
    assert len(ds) == 8 and stats["dropped"] == 0  # split='train' and labelled only
    cut = stats["total_tokens_max"] - 1
    ds, stats = prepare_sft_data(sft_cfg(examples_dir, tiny_model, tmp_path, max_length=cut), tok)
    assert 1 <= stats["dropped"] < 8 and len(ds) == 8 - stats["dropped"]
    with pytest.raises(ValueError, match="no SFT examples"):
        prepare_sft_data(sft_cfg(examples_dir, tiny_model, tmp_path, max_length=100), tok)


# ---------------------------------------------------------------------------------------------------
# SFT
# ---------------------------------------------------------------------------------------------------


def test_completion_only_masking(examples_dir: Path, tiny_model: Path, tmp_path: Path) -> None:
    cfg = sft_cfg(examples_dir, tiny_model, tmp_path)
    tok = load_tokenizer(str(tiny_model))
    ds, _ = prepare_sft_data(cfg, tok)
    trainer = build_sft_trainer(cfg, ds, tok)
    row = trainer.train_dataset[0]
    prompt_ids = tok.apply_chat_template(ds[0]["prompt"], tokenize=False, add_generation_prompt=True)
    n_prompt = len(tok(prompt_ids, add_special_tokens=False)["input_ids"])
    labels, ids = row["labels"], row["input_ids"]
    assert all(v == -100 for v in labels[:n_prompt])  # the whole prompt (system, user, assistant header)
    assert labels[n_prompt:] == ids[n_prompt:]  # the completion is trained on
    assert tok.decode(ids[n_prompt:]) == "Nike<|im_end|>\n"  # label + end of turn
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    assert batch["labels"].shape == batch["input_ids"].shape
    assert int((batch["labels"] != -100).sum()) < 20  # a few completion tokens per row, no prompt tokens

    # score_labelled_only (our CPU patch of TRL's fused LM head) changes the speed, not the values
    import torch

    trainer.model.eval()
    with torch.no_grad():
        full = trainer.compute_loss(trainer.model, dict(batch))
        with score_labelled_only() as active:
            compact = trainer.compute_loss(trainer.model, dict(batch))
    assert active and torch.isfinite(full)
    assert torch.allclose(full, compact, rtol=1e-5, atol=1e-6)


def test_sft_full_finetune(examples_dir: Path, tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "sft"
    m = train_sft(sft_cfg(examples_dir, tiny_model, out))
    assert m["steps"] == 2 and m["examples"] == 8 and m["device"] == "cpu"
    assert math.isfinite(m["train_loss_first"]) and math.isfinite(m["train_loss_last"])
    assert m["s_per_step"] > 0 and m["examples_per_s"] > 0 and m["tokens"] > 0
    assert m["params_trainable"] == m["params_total"] and not m["lora_merged"]
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["metrics"]["steps"] == 2 and summary["config"]["template"] == "sft_text"
    model = _reload(out)
    assert model.config.hidden_size == 32
    assert (out / "chat_template.jinja").exists() or "chat_template" in (
        out / "tokenizer_config.json"
    ).read_text()


def test_sft_lora_merged(examples_dir: Path, tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "sft-lora"
    m = train_sft(sft_cfg(examples_dir, tiny_model, out, lora=True, lora_r=4, lora_alpha=8))
    assert m["steps"] == 2 and math.isfinite(m["train_loss_last"])
    assert m["lora_merged"] and m["params_trainable"] < m["params_total"]
    assert not (out / "adapter_config.json").exists() and not (out / "adapter_model.safetensors").exists()
    assert (out / "model.safetensors").exists()
    model = _reload(out)  # a plain HF folder: no LoRA modules left
    assert not any("lora" in name for name, _ in model.named_parameters())


# ---------------------------------------------------------------------------------------------------
# GRPO
# ---------------------------------------------------------------------------------------------------


def test_grpo_steps(examples_dir: Path, tiny_model: Path, tmp_path: Path) -> None:
    calls: list[dict] = []

    def spy_reward(completions, label_advertiser_name, **kwargs):
        calls.append({"n": len(completions), "labels": list(label_advertiser_name), "keys": set(kwargs)})
        return paper_reward(completions, label_advertiser_name, **kwargs)

    out = tmp_path / "grpo"
    cfg = GRPORunConfig(
        examples=examples_dir,
        model=tiny_model,
        output_dir=out,
        max_steps=2,
        batch_size=2,
        num_generations=2,
        max_completion_length=16,
        max_prompt_length=768,
        budget_tokens=64,
        learning_rate=1e-4,
        disable_tqdm=True,
    )
    m = train_grpo(cfg, reward_funcs=[spy_reward])
    assert m["steps"] == 2 and len(calls) == 2
    assert all(c["n"] == 4 and set(c["labels"]) <= set(LABELS) for c in calls)  # 2 prompts x 2 generations
    assert "user_id" in calls[0]["keys"] and "prompts" in calls[0]["keys"]
    assert m["reward_first"] is not None and math.isfinite(m["reward_last"])
    assert m["reward_last"] >= -4.0  # the lowest possible R_total
    assert m["s_per_step"] > 0 and m["completions"] == 8
    assert (out / "train_summary.json").exists()
    assert _reload(out).config.num_hidden_layers == 2


def test_sft_resume_equals_uninterrupted(
    examples_dir: Path, tiny_model: Path, tmp_path: Path, monkeypatch
) -> None:
    """A run stopped after its step-2 checkpoint and resumed with ``resume`` ends where an uninterrupted run
    does: the same losses at every step and the same final weights (optimizer, scheduler and RNG restored)."""
    import torch
    from transformers import TrainerCallback

    import llm_predictor.train.trainers as train_mod

    kw = {"max_steps": 4, "save_steps": 2, "lora": True, "lora_r": 4, "lora_alpha": 8}
    train_sft(sft_cfg(examples_dir, tiny_model, tmp_path / "whole", **kw))

    class StopAt2(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            control.should_training_stop = state.global_step >= 2
            return control

    out = tmp_path / "split"
    build = train_mod.build_sft_trainer
    with monkeypatch.context() as m:  # the first sitting ends after step 2 (its checkpoint is written)
        m.setattr(
            train_mod,
            "build_sft_trainer",
            lambda cfg, ds, tok, callbacks=None: build(cfg, ds, tok, [*(callbacks or []), StopAt2()]),
        )
        first = train_sft(sft_cfg(examples_dir, tiny_model, out, **kw))
    assert first["steps"] == 2 and (out / "checkpoint-2").is_dir()

    seen: list[int] = []

    class Count(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            seen.append(state.global_step)

    with monkeypatch.context() as m:  # the second sitting computes steps 3 and 4 only
        m.setattr(
            train_mod,
            "build_sft_trainer",
            lambda cfg, ds, tok, callbacks=None: build(cfg, ds, tok, [*(callbacks or []), Count()]),
        )
        resumed = train_sft(sft_cfg(examples_dir, tiny_model, out, resume=True, **kw))
    assert resumed["steps"] == 4 and seen == [3, 4]

    def losses(folder: Path) -> dict[int, float]:
        summary = json.loads((folder / "train_summary.json").read_text())
        return {r["step"]: r["loss"] for r in summary["log_history"] if "loss" in r}

    a, b = losses(tmp_path / "whole"), losses(out)
    assert set(a) == set(b) == {1, 2, 3, 4}
    assert all(math.isclose(a[s], b[s], rel_tol=1e-4) for s in a), (a, b)
    w1, w2 = _reload(tmp_path / "whole").state_dict(), _reload(out).state_dict()
    assert all(torch.allclose(w1[k], w2[k], atol=1e-5) for k in w1)
