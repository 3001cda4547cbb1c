"""llm_predictor.train.common: the Trainer's own per-step output is dropped without a terminal."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from llm_predictor.train.common import quiet_progress


def _trainer(tmp_path: Path):  # a Trainer on a tiny random GPT-2 (no download, no data)
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=1, n_embd=8, vocab_size=16, n_positions=8))
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", disable_tqdm=False, use_cpu=True)
    return Trainer(model=model, args=args)


def _names(trainer) -> set[str]:
    return {type(cb).__name__ for cb in trainer.callback_handler.callbacks}


def test_no_bar_or_printed_logs_without_a_terminal(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path)
    assert "ProgressCallback" in _names(trainer)
    quiet_progress(trainer)  # pytest captures stderr: not a terminal
    assert not {"ProgressCallback", "PrinterCallback"} & _names(trainer)


def test_debug_logging_keeps_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trainer = _trainer(tmp_path)
    monkeypatch.setattr(logging.getLogger("llm_predictor.train.common"), "level", logging.DEBUG)
    quiet_progress(trainer)
    assert "ProgressCallback" in _names(trainer)
