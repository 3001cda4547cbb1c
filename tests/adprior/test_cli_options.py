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
    env = dict(os.environ)  # setup_logging sets variables for libraries imported later
    yield
    os.environ.clear()
    os.environ.update(env)
    for n, level in before.items():
        logging.getLogger(n).setLevel(level)


def test_default_verbosity_keeps_library_chatter_out(restore_levels) -> None:
    setup_logging(verbose=False)
    registry = logging.getLogger("feast.infra.registry.registry")  # "Registry cache expired" on every read
    assert not registry.isEnabledFor(logging.INFO) and registry.isEnabledFor(logging.WARNING)
    assert not logging.getLogger("py4j.clientserver").isEnabledFor(logging.INFO)


def test_no_library_bars_or_start_up_warnings_at_default_verbosity(restore_levels, monkeypatch) -> None:
    quiet = {
        "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
        "VLLM_LOGGING_LEVEL": "ERROR",
        "TORCH_CPP_LOG_LEVEL": "ERROR",
    }
    for name in quiet:
        monkeypatch.delenv(name, raising=False)
    setup_logging(verbose=True)  # -v keeps them
    assert not set(quiet) & set(os.environ)
    setup_logging(verbose=False)  # pytest captures stderr: not a terminal
    assert {name: os.environ[name] for name in quiet} == quiet


def test_verbose_gives_everything(restore_levels) -> None:
    setup_logging(verbose=False)
    setup_logging(verbose=True)  # -v: the libraries inherit the root's DEBUG again
    assert all(logging.getLogger(name).level == logging.NOTSET for name in NOISY_LOGGERS)
