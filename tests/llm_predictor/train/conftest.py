"""Fixtures of the SFT and GRPO tests: the tiny examples and the tiny Llama of tests/support/tiny_train.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.tiny_train import write_examples_dir, write_tiny_llama


@pytest.fixture(scope="module")
def examples_dir(tmp_path_factory) -> Path:
    """The 10 example rows and the 10-name preset pool in the compile output layout."""
    return write_examples_dir(tmp_path_factory.mktemp("examples"))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A 2-layer Llama (hidden size 32) with the real SmolLM2 tokenizer and chat template."""
    return write_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))
