"""The SFT -> GRPO -> eval recipe (llm_predictor.train.recipe): the dry-run preset end to end on a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from llm_predictor.train.recipe import PRESETS, parse_overrides, preset, run_recipe, stage_configs


def test_presets_and_overrides() -> None:
    gpu = preset("gpu")
    assert gpu.bf16 and gpu.use_vllm and not gpu.lora and gpu.sft_batch >= 32
    assert preset("cpu").lora and not preset("cpu").use_vllm
    assert set(PRESETS) == {"gpu", "cpu", "dry-run"}
    sft, grpo = stage_configs(preset("gpu", out="/tmp/recipe-gpu"))  # what a GPU machine would run
    assert sft.lora is None and sft.template == "grpo_text" and sft.sft.per_device_train_batch_size == 32
    assert grpo.grpo.use_vllm and grpo.grpo.vllm_mode == "colocate"  # rollouts on vLLM inside TRL
    assert grpo.grpo.generation_batch_size == 32 * 8 and str(grpo.model).endswith("sft")
    assert grpo.grpo.bf16 == torch.cuda.is_available()  # bf16 only where there is a GPU
    assert parse_overrides(["sft_steps=7", "use_vllm=false", "sft_lr=1e-4", "max_train_examples=none"]) == {
        "sft_steps": 7,
        "use_vllm": False,
        "sft_lr": 1e-4,
        "max_train_examples": None,
    }
    with pytest.raises(ValueError, match="FIELD=VALUE"):
        parse_overrides(["nope=1"])
    with pytest.raises(ValueError, match="true or false"):
        parse_overrides(["lora=maybe"])
    with pytest.raises(ValueError, match="unknown preset"):
        preset("tpu")


def test_dry_run_recipe_runs_every_stage(examples_dir: Path, tiny_model: Path, tmp_path: Path) -> None:
    cfg = preset(
        "dry-run", examples=examples_dir, out=tmp_path / "recipe", model=tiny_model, budget_tokens=64
    )
    report = run_recipe(cfg)
    assert report["stages"]["sft"]["steps"] == 2 and report["stages"]["grpo"]["steps"] == 2
    recall = report["stages"]["eval"]["recall"]
    assert "llm: sft" in recall and "llm: grpo" in recall and "history" in recall
    for stage in ("sft", "grpo"):
        assert (tmp_path / "recipe" / stage / "model.safetensors").exists()
    assert json.loads((tmp_path / "recipe" / "recipe.json").read_text())["config"]["sft_steps"] == 2
    again = run_recipe(cfg)  # finished stages are skipped, not redone
    assert again["stages"]["sft"]["steps"] == 2 and again["stages"]["eval"]["recall"] == recall
