"""Real TRL SFT steps on CPU with a tiny randomly initialised Llama (llm_predictor.train.sft).

Choices that keep this file fast on 2 busy cores (the model and examples: tests/support/tiny_train.py):

* ``budget_tokens=64`` cuts the per-user part. The shared prefix of the templates cannot be cut (sft_text
  ~300 SmolLM2 tokens), so SFT uses ``max_length=512``; sequences that long cost little with this model.
* 2 optimizer steps of batch 2.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from llm_predictor.train.common import load_tokenizer, score_labelled_only
from llm_predictor.train.config import SFTRunConfig, lora_config, sft_config
from llm_predictor.train.sft import build_sft_trainer, prepare_sft_data, train_sft
from tests.support.tiny_train import reload_model


def sft_cfg(
    examples_dir: Path, model: Path, out: Path, lora=None, resume: bool = False, **trl_args
) -> SFTRunConfig:
    """The tests' SFT run on the tiny examples; ``trl_args`` override ``sft_config`` fields."""
    base = {
        "output_dir": out,
        "max_steps": 2,
        "per_device_train_batch_size": 2,
        "max_length": 512,
        "learning_rate": 1e-3,
        "disable_tqdm": True,
    }
    return SFTRunConfig(
        sft=sft_config(**{**base, **trl_args}),
        lora=lora,
        resume=resume,
        examples=examples_dir,
        model=model,
        budget_tokens=64,
    )


def test_length_guard_drops_rows(examples_dir: Path, tiny_model: Path, tmp_path: Path) -> None:
    tok = load_tokenizer(str(tiny_model))
    ds, stats = prepare_sft_data(sft_cfg(examples_dir, tiny_model, tmp_path, max_length=None), tok)
    assert len(ds) == 8 and stats["dropped"] == 0  # split='train' and labelled only
    cut = stats["total_tokens_max"] - 1
    ds, stats = prepare_sft_data(sft_cfg(examples_dir, tiny_model, tmp_path, max_length=cut), tok)
    assert 1 <= stats["dropped"] < 8 and len(ds) == 8 - stats["dropped"]
    with pytest.raises(ValueError, match="no SFT examples"):
        prepare_sft_data(sft_cfg(examples_dir, tiny_model, tmp_path, max_length=100), tok)


def test_completion_only_masking(examples_dir: Path, tiny_model: Path, tmp_path: Path) -> None:
    cfg = sft_cfg(examples_dir, tiny_model, tmp_path)
    cfg.group_by_date = False  # the dataset's own order (grouped batches: tests/.../test_prefix.py)
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
    model = reload_model(out)
    assert model.config.hidden_size == 32
    assert (out / "chat_template.jinja").exists() or "chat_template" in (
        out / "tokenizer_config.json"
    ).read_text()


def test_sft_lora_merged(examples_dir: Path, tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "sft-lora"
    m = train_sft(sft_cfg(examples_dir, tiny_model, out, lora=lora_config(r=4, lora_alpha=8)))
    assert m["steps"] == 2 and math.isfinite(m["train_loss_last"])
    assert m["lora_merged"] and m["params_trainable"] < m["params_total"]
    assert not (out / "adapter_config.json").exists() and not (out / "adapter_model.safetensors").exists()
    assert (out / "model.safetensors").exists()
    model = reload_model(out)  # a plain HF folder: no LoRA modules left
    assert not any("lora" in name for name, _ in model.named_parameters())


def test_sft_resume_equals_uninterrupted(
    examples_dir: Path, tiny_model: Path, tmp_path: Path, monkeypatch
) -> None:
    """A run stopped after its step-2 checkpoint and resumed with ``resume`` ends where an uninterrupted run
    does: the same losses at every step and the same final weights (optimizer, scheduler and RNG restored)."""
    import torch
    from transformers import TrainerCallback

    import llm_predictor.train.sft as train_mod

    def cfg(out: Path, resume: bool = False) -> SFTRunConfig:  # 4 steps, a checkpoint every 2, LoRA r=4
        return sft_cfg(
            examples_dir,
            tiny_model,
            out,
            lora=lora_config(r=4, lora_alpha=8),
            resume=resume,
            max_steps=4,
            save_steps=2,
        )

    train_sft(cfg(tmp_path / "whole"))

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
        first = train_sft(cfg(out))
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
        resumed = train_sft(cfg(out, resume=True))
    assert resumed["steps"] == 4 and seen == [3, 4]

    def losses(folder: Path) -> dict[int, float]:
        summary = json.loads((folder / "train_summary.json").read_text())
        return {r["step"]: r["loss"] for r in summary["log_history"] if "loss" in r}

    a, b = losses(tmp_path / "whole"), losses(out)
    assert set(a) == set(b) == {1, 2, 3, 4}
    assert all(math.isclose(a[s], b[s], rel_tol=1e-4) for s in a), (a, b)
    w1, w2 = reload_model(tmp_path / "whole").state_dict(), reload_model(out).state_dict()
    assert all(torch.allclose(w1[k], w2[k], atol=1e-5) for k in w1)
