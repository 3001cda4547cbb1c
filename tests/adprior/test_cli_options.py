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


def test_the_generating_verbs_start_from_the_serving_engine() -> None:
    """`adprior infer` / `nightly` build their engine from InferConfig's (vLLM in the worker's process), with
    the options they were given on top; no field of InferConfig's engine is restated in the CLI."""
    from adprior.cli.serve import infer_settings
    from llm_predictor.infer.plan import InferConfig

    got = infer_settings(
        model=None,
        engine="transformers",
        batch_size=3,
        max_new_tokens=99,
        unconstrained=False,
        no_prefix_cache=True,
        num_beams=1,
        max_names=7,
        shard_size=5,
    )
    cfg = got["engine"]
    assert InferConfig.__dataclass_fields__["engine"].default_factory().vllm_in_process
    assert cfg.vllm_in_process and cfg.kind == "transformers" and not cfg.prefix_cache
    assert (cfg.batch_size, cfg.max_new_tokens, cfg.max_names, got["shard_size"]) == (3, 99, 7, 5)
