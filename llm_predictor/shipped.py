"""The shipped default model: the base model plus a committed LoRA adapter, merged once into the cache.

A trained adapter is committed under ``llm_predictor/adapters/<name>/`` by ``adprior train ship``:

* ``adapter_config.json`` and ``adapter_model.safetensors`` (PEFT's files; weights stored in fp16 to halve
  the size, loaded into the fp32 base model),
* ``manifest.json``: the adapter file's sha256, the base model it was trained on (``GgufSource``), and
  the training run's summary (the exact command lines, config, steps, wall time, final loss),
* ``MODEL.md``: the same as a frozen, human-readable config headed by the commands.

:func:`resolve_model` turns a ``--model`` value into a model folder: ``None`` / ``"default"`` -> the base
model with the default adapter merged (or the base model when no adapter is shipped), ``"base"`` -> the
base model, the name of another committed adapter (``"amazon"``) or a path to a shipped adapter folder ->
the base model with that adapter merged, anything else -> that folder. The merge runs once per adapter checksum and is cached as a
plain Hugging Face folder (``<cache>/models/<base>+<name>-<sha12>/``), which vLLM and transformers load
like any model; the checksum is verified before merging.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from llm_predictor.base_model import DEFAULT_CACHE, SMOLLM2, ensure_base_model, sha256

log = logging.getLogger(__name__)

ADAPTERS = Path(__file__).resolve().parent / "adapters"  # committed adapters, one folder each
DEFAULT_ADAPTER = "default"  # the adapter `adprior nightly` serves unless --model says otherwise
ADAPTER_FILE = "adapter_model.safetensors"
MANIFEST = "manifest.json"
BASE = "base"  # the --model value naming the plain base model


def adapter_dir(name: str = DEFAULT_ADAPTER, root: Path = ADAPTERS) -> Path | None:
    """The committed adapter folder ``name`` (None when it is not shipped)."""
    return _shipped(root / name)


def _shipped(folder: Path) -> Path | None:
    """``folder`` when it holds a shipped adapter (:func:`ship_adapter`'s weights and manifest), else None."""
    return folder if (folder / ADAPTER_FILE).exists() and (folder / MANIFEST).exists() else None


def merged_model(folder: Path, cache: Path = DEFAULT_CACHE, base: Path | None = None) -> Path:
    """The base model with the adapter of ``folder`` merged, as a cached Hugging Face folder.

    Args:
        folder: a shipped adapter folder (:func:`ship_adapter`).
        cache: the cache root (the merged folder goes to ``cache/models``).
        base: the model the adapter was trained on; None = the converted SmolLM2 base model.

    Raises:
        ValueError: the adapter file's checksum differs from its manifest's.
    """
    manifest = json.loads((folder / MANIFEST).read_text())
    digest = sha256(folder / ADAPTER_FILE)
    if digest != manifest["sha256"]:
        raise ValueError(
            f"{folder / ADAPTER_FILE}: sha256 {digest} differs from {MANIFEST} ({manifest['sha256']})"
        )
    base = Path(base) if base is not None else ensure_base_model(cache=cache)
    out = cache / "models" / f"{base.name}+{folder.name}-{digest[:12]}"
    if (out / "config.json").exists():
        return out
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("merging adapter %s into %s -> %s", folder, base, out)
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    model = PeftModel.from_pretrained(model, str(folder)).merge_and_unload()
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(str(tmp))
    AutoTokenizer.from_pretrained(str(base)).save_pretrained(str(tmp))
    (tmp / "adprior_source.json").write_text(
        json.dumps({"base": str(base), "adapter": str(folder), "sha256": digest}, indent=2)
    )
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def resolve_model(model: str | Path | None, cache: Path = DEFAULT_CACHE) -> Path:
    """The model folder a ``--model`` value names (see the module docstring)."""
    if model is None or str(model) == DEFAULT_ADAPTER:
        folder = adapter_dir()
        if folder is None:
            return ensure_base_model(cache=cache)
        return merged_model(folder, cache)
    if str(model) == BASE:
        return ensure_base_model(cache=cache)
    folder = shipped_folder(model)
    return merged_model(folder, cache) if folder is not None else Path(model)


def shipped_folder(model: str | Path, root: Path = ADAPTERS) -> Path | None:
    """The shipped adapter folder a ``--model`` value names: a committed adapter's name under ``root``
    (``"amazon"``) or a path to a folder :func:`ship_adapter` wrote; None for anything else."""
    path = Path(model)
    return _shipped(path) if path.exists() else adapter_dir(str(model), root)


def ship_adapter(
    run_dir: Path, name: str = DEFAULT_ADAPTER, root: Path = ADAPTERS, extra: dict[str, Any] | None = None
) -> Path:
    """Copy a LoRA run's adapter into ``root/name`` (weights as fp16) with its manifest and MODEL.md.

    Args:
        run_dir: a finished ``adprior train sft|grpo --lora`` output folder (``adapter/`` and
            ``train_summary.json``), or one of its ``checkpoint-N`` folders (then the summary is
            ``trainer_state.json``'s log history).
        name: the adapter's folder name under ``root`` ('default' is what the nightly serves).
        root: where committed adapters live.
        extra: more facts for the manifest (e.g. the data preparation commands).

    Returns:
        The adapter folder.
    """
    import torch
    from safetensors.torch import load_file, save_file

    src = run_dir / "adapter" if (run_dir / "adapter" / ADAPTER_FILE).exists() else run_dir
    if not (src / ADAPTER_FILE).exists():
        raise FileNotFoundError(f"no {ADAPTER_FILE} under {run_dir} or {run_dir / 'adapter'}")
    out = root / name
    out.mkdir(parents=True, exist_ok=True)
    weights = {k: v.to(torch.float16).contiguous() for k, v in load_file(str(src / ADAPTER_FILE)).items()}
    save_file(weights, str(out / ADAPTER_FILE), metadata={"format": "pt"})
    shutil.copyfile(src / "adapter_config.json", out / "adapter_config.json")
    summary = _run_summary(run_dir)
    manifest = {
        "sha256": sha256(out / ADAPTER_FILE),
        "base_model": {"package": SMOLLM2.package, "version": SMOLLM2.version, "sha256": SMOLLM2.sha256},
        "source": str(run_dir),
        **(extra or {}),
        **summary,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    (out / "MODEL.md").write_text(model_card(name, manifest))
    return out


def _run_summary(run_dir: Path) -> dict[str, Any]:
    summary = run_dir / "train_summary.json"
    if summary.exists():
        data = json.loads(summary.read_text())
        metrics = data.get("metrics", {})
        keep = ("steps", "seconds", "examples", "examples_seen", "train_loss_first", "train_loss_last")
        return {
            "train_command": data.get("command"),
            "config": data.get("config"),
            "metrics": {k: metrics.get(k) for k in keep},
            "data": metrics.get("data"),
        }
    state = json.loads((run_dir / "trainer_state.json").read_text())
    losses = [h["loss"] for h in state.get("log_history", []) if "loss" in h]
    return {"metrics": {"steps": state.get("global_step"), "train_loss_last": losses[-1] if losses else None}}


def model_card(name: str, manifest: dict[str, Any]) -> str:
    """MODEL.md: the frozen config of a shipped adapter, headed by the commands that made it."""
    commands = [*manifest.get("prepare_commands", []), manifest.get("train_command")]
    metrics = manifest.get("metrics", {})
    lines = [
        f"# Shipped adapter `{name}`",
        "",
        "Commands (from the repository root; the data commands first):",
        "",
        "```bash",
        *[c for c in commands if c],
        "```",
        "",
        f"- base model: {manifest['base_model']['package']} {manifest['base_model']['version']} "
        f"(GGUF sha256 `{manifest['base_model']['sha256']}`)",
        f"- adapter sha256 (`{ADAPTER_FILE}`, fp16): `{manifest['sha256']}`",
        f"- steps: {metrics.get('steps')}; examples seen: {metrics.get('examples_seen')}; "
        f"wall time: {metrics.get('seconds')} s; loss {metrics.get('train_loss_first')} -> "
        f"{metrics.get('train_loss_last')}",
        f"- data: {json.dumps(manifest.get('data'), default=str)}",
        *[f"- {k}: {v}" for k, v in manifest.items() if k in ("wall_time_note", "notes")],
        "",
        "The full run config is `manifest.json` (`config`).",
        "",
    ]
    return "\n".join(lines)
