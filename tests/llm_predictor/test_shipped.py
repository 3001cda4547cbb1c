"""The shipped default model (llm_predictor.shipped): ship a LoRA run's adapter, verify, merge, resolve."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from llm_predictor.base_model import ensure_base_model
from llm_predictor.shipped import (
    ADAPTER_FILE,
    MANIFEST,
    adapter_dir,
    merged_model,
    resolve_model,
    sha256,
    ship_adapter,
    shipped_folder,
)
from llm_predictor.train.config import SFTRunConfig, lora_config, sft_config
from llm_predictor.train.sft import train_sft
from tests.support.tiny_train import write_examples_dir, write_tiny_llama


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory) -> tuple[Path, Path]:
    """(tiny base model, a finished 2-step LoRA SFT run on it)."""
    tmp = tmp_path_factory.mktemp("ship")
    model = write_tiny_llama(tmp / "tiny")
    cfg = SFTRunConfig(
        sft=sft_config(
            output_dir=tmp / "run",
            max_steps=2,
            per_device_train_batch_size=2,
            max_length=512,
            learning_rate=1e-2,
            disable_tqdm=True,
        ),
        lora=lora_config(r=4),
        examples=write_examples_dir(tmp / "examples"),
        model=model,
        budget_tokens=64,
    )
    train_sft(cfg)
    return model, tmp / "run"


def test_ship_merge_and_resolve(lora_run: tuple[Path, Path], tmp_path: Path) -> None:
    base, run = lora_run
    assert (run / "adapter" / ADAPTER_FILE).exists()  # a LoRA run keeps its adapter beside the merged model
    folder = ship_adapter(run, "test", root=tmp_path / "adapters", extra={"prepare_commands": ["make data"]})
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["sha256"] == sha256(folder / ADAPTER_FILE)
    assert manifest["metrics"]["steps"] == 2 and manifest["train_command"]
    card = (folder / "MODEL.md").read_text()
    assert "make data" in card and manifest["sha256"] in card
    assert adapter_dir("test", root=tmp_path / "adapters") == folder
    assert adapter_dir("missing", root=tmp_path / "adapters") is None
    assert shipped_folder(folder) == folder  # a path to a shipped adapter: --model merges it
    assert shipped_folder("test", root=tmp_path / "adapters") == folder  # or its name under the root
    assert shipped_folder(run) is None  # a run folder is a plain model folder

    merged = merged_model(folder, cache=tmp_path / "cache", base=base)
    from safetensors.torch import load_file

    ours = load_file(str(merged / "model.safetensors"))
    trained = load_file(str(run / "model.safetensors"))  # the run's own merge (fp32 adapter)
    changed = [
        k for k in trained if not torch.equal(trained[k], load_file(str(base / "model.safetensors"))[k])
    ]
    assert changed  # the adapter moved the weights
    for k in changed:
        assert torch.allclose(ours[k], trained[k], atol=1e-3), k  # fp16 adapter storage only
    assert merged_model(folder, cache=tmp_path / "cache", base=base) == merged  # cached by checksum

    (folder / ADAPTER_FILE).write_bytes((folder / ADAPTER_FILE).read_bytes() + b"x")
    with pytest.raises(ValueError, match="sha256"):
        merged_model(folder, cache=tmp_path / "cache2", base=base)


def test_resolve_model_names() -> None:
    assert resolve_model("base") == ensure_base_model()
    assert resolve_model("/some/folder") == Path("/some/folder")
    assert shipped_folder("amazon") == adapter_dir("amazon")  # the committed real-data adapter by name
    shipped = adapter_dir()
    default = resolve_model(None)
    assert (default == ensure_base_model()) == (shipped is None)
    assert resolve_model("default") == default
