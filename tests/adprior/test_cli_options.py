"""What every verb shares: logging at default verbosity and with -v."""

from __future__ import annotations

import logging
import os

import pytest

from adprior.cli.options import NOISY_LOGGERS, setup_logging


@pytest.fixture
def restore_levels():
    names = ["", *NOISY_LOGGERS, "feast.infra.registry.registry"]
    before = {n: logging.getLogger(n).level for n in names}
    logging.getLogger().setLevel(logging.INFO)  # as the CLI sets the root (pytest's root is WARNING)
    yield
    for n, level in before.items():
        logging.getLogger(n).setLevel(level)


def test_default_verbosity_keeps_library_chatter_out(restore_levels) -> None:
    setup_logging(verbose=False)
    registry = logging.getLogger("feast.infra.registry.registry")  # "Registry cache expired" on every read
    assert not registry.isEnabledFor(logging.INFO) and registry.isEnabledFor(logging.WARNING)
    assert not logging.getLogger("py4j.clientserver").isEnabledFor(logging.INFO)


def test_no_dataset_bars_without_a_terminal(restore_levels, monkeypatch) -> None:
    monkeypatch.delenv("HF_DATASETS_DISABLE_PROGRESS_BARS", raising=False)
    setup_logging(verbose=True)  # -v keeps them
    assert "HF_DATASETS_DISABLE_PROGRESS_BARS" not in os.environ
    setup_logging(verbose=False)  # pytest captures stderr: not a terminal
    assert os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] == "1"


def test_verbose_gives_everything(restore_levels) -> None:
    setup_logging(verbose=False)
    setup_logging(verbose=True)  # -v: the libraries inherit the root's DEBUG again
    assert all(logging.getLogger(name).level == logging.NOTSET for name in NOISY_LOGGERS)
