"""Shared fixtures: one real local Spark session per test run, and raw-table writers."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

if TYPE_CHECKING:
    from adprior.store import StoreConfig

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

# The fast subset, `pytest -m "not slow"` (about 3 minutes on 2 cores), leaves out what starts a JVM
# (Spark), a Ray cluster, vLLM, a Feast CLI / feature-server process or an infra service script, and what
# trains or runs a model; the README's full command (CI) runs everything. A test is slow when its module
# is listed here, when it uses one of these fixtures, or when it carries @pytest.mark.slow itself.
SLOW_MODULES = frozenset(
    {
        "adprior/test_faults.py",
        "adprior/test_feature_server.py",
        "adprior/test_infra.py",
        "adprior/test_nightly.py",
        "adprior/test_pipeline.py",
        "adprior/test_store_spark.py",
        "llm_predictor/data/test_compile.py",
        "llm_predictor/eval/test_evaluate.py",
        "llm_predictor/infer/test_engines.py",
        "llm_predictor/infer/test_shards.py",
        "llm_predictor/infer/test_vllm.py",
        "llm_predictor/train/test_cpt.py",
        "llm_predictor/train/test_grpo.py",
        "llm_predictor/train/test_sft.py",
        "ranking/test_ranking.py",
        "retrieval/test_model.py",
        "retrieval/test_serving.py",
    }
)
SLOW_FIXTURES = frozenset({"spark", "ranking_world", "tiny_model_dir", "tiny_llama"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    tests = Path(__file__).resolve().parent
    for item in items:
        module = item.path.resolve().relative_to(tests).as_posix()
        if module in SLOW_MODULES or SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def spark() -> Iterator:
    from adprior.io import SparkConfig, get_spark

    s = get_spark(SparkConfig(master="local[2]", shuffle_partitions=4, driver_memory="2g"))
    yield s
    s.stop()


def compiled_world(root: Path, spark, anchors: list[date], **world: object) -> tuple[Path, Path]:
    """Simulate a small world under ``root/world`` (``world`` = WorldConfig fields) and compile its examples
    for ``anchors`` under ``root/ex`` in the Spark session ``spark`` (None: the one compile_examples gets);
    returns (raw data folder, examples folder)."""
    from llm_predictor.data.compile import CompileConfig, compile_examples
    from world.config import WorldConfig
    from world.simulate import simulate

    data, ex = root / "world", root / "ex"
    simulate(WorldConfig(out=data, end_date=date(2026, 6, 30), **world))  # type: ignore[arg-type]
    compile_examples(CompileConfig(data=data, out=ex, anchor_dates=anchors, tokenizer=None), spark=spark)
    return data, ex


def feast_world(root: Path, anchors: list[date], **world: object) -> tuple[Path, Path, StoreConfig]:
    """:func:`compiled_world` under ``root`` plus a fresh Feast repo at ``root/feature_repo`` holding the
    daily features of every anchor, not applied yet; returns (raw data folder, examples folder, StoreConfig).

    The examples are compiled in the session ``get_spark(CompileConfig().spark)`` returns: the test session
    (callers request the ``spark`` fixture), with the default SparkConfig's settings."""
    from adprior import store as st
    from llm_predictor.data.compiled import load_examples

    data, ex = compiled_world(root, None, anchors, **world)
    cfg = st.StoreConfig(repo=root / "feature_repo")
    st.init_repo(cfg.repo)
    for day in anchors:
        st.write_daily_features(cfg, data, load_examples(ex, day), day)
    return data, ex, cfg


def infer_config(world: tuple[Path, Path], tmp: Path, model: Path, **kw: object):
    """The InferConfig the inference tests share: a tiny model, 4-name answers, the local runner; ``kw``
    (``day`` among them) are InferConfig fields."""
    from llm_predictor.infer.engines import EngineConfig
    from llm_predictor.infer.plan import InferConfig

    data, ex = world
    engine = EngineConfig(model=str(model), batch_size=4, max_new_tokens=120, max_names=4)
    base: dict[str, object] = dict(
        examples=ex,
        data=data,
        work=tmp / "work",
        predictions=tmp / "pred",
        engine=engine,
        shard_size=16,
        runner="local",
        budget_tokens=160,
        cpus_per_worker=1,
    )
    base.update(kw)
    return InferConfig(**base)  # type: ignore[arg-type]


def infer_argv(
    world: tuple[Path, Path], tmp: Path, model: Path, day: date, shard_size: int, runner: str, *extra: str
) -> list[str]:
    """``adprior infer`` arguments with :func:`infer_config`'s settings (batch 4, 120 new tokens, budget 160,
    4 names, 1 CPU a worker) on the transformers engine, work folder ``tmp/work`` and Feast repo ``tmp/repo``;
    ``extra`` arguments go last."""
    data, ex = world
    return [
        "infer",
        "--engine",
        "transformers",
        "--examples",
        str(ex),
        "--data",
        str(data),
        "--date",
        day.isoformat(),
        "--work",
        str(tmp / "work"),
        "--repo",
        str(tmp / "repo"),
        "--model",
        str(model),
        "--batch-size",
        "4",
        "--max-new-tokens",
        "120",
        "--budget-tokens",
        "160",
        "--shard-size",
        str(shard_size),
        "--runner",
        runner,
        "--cpus-per-worker",
        "1",
        "--max-names",
        "4",
        *extra,
    ]


def prediction_rows(path: Path | str) -> list[dict]:
    """A predictions partition's rows without created_timestamp (the plan's creation time differs per plan)."""
    return pq.read_table(path).drop(["created_timestamp"]).to_pylist()


def ts(text: str) -> datetime:
    """'2026-06-10 23:59:59' -> aware UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def event(t: str, event_type: str, user_id: int = 1, **columns: object) -> dict:
    """A raw ``events`` row of ``user_id`` at UTC time ``t`` ('2026-06-02 10:00:00'); ``columns`` are its other
    columns (advertiser_id, item_id, conversion_type, ...)."""
    return dict(user_id=user_id, ts=ts(t), event_type=event_type, **columns)


def write_raw(root: Path, tables: dict[str, list[dict]]) -> Path:
    """Write hand-built raw tables (lists of row dicts) under ``root`` per the contract."""
    from world.schema import PARTITIONED, SCHEMAS, conform, validate_table

    for name, rows in tables.items():
        schema = SCHEMAS[name]
        cols = {f: [r.get(f) for r in rows] for f in schema.names}
        t = conform(pa.table({f: pa.array(cols[f], type=schema.field(f).type) for f in schema.names}), name)
        validate_table(t, name)
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        if name in PARTITIONED:
            if name == "events":
                dts = [r["ts"].strftime("%Y-%m-%d") for r in rows]
            else:
                dts = [r["dt"].isoformat() for r in rows]
            t = t.append_column("dt", pa.array(dts))
            pads.write_dataset(
                t,
                folder,
                format="parquet",
                partitioning=["dt"],
                partitioning_flavor="hive",
                existing_data_behavior="overwrite_or_ignore",
            )
        else:
            pq.write_table(t, folder / "part-0.parquet")
    return root


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny randomly initialised Llama with the real SmolLM2 tokenizer, saved as an HF folder."""
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    from llm_predictor.base_model import ensure_base_model
    from tests.support.tiny_llama import tiny_llama_config

    tok = AutoTokenizer.from_pretrained(str(ensure_base_model()))
    torch.manual_seed(0)
    cfg = tiny_llama_config(len(tok), max_position_embeddings=4096)
    path = tmp_path_factory.mktemp("tiny") / "tiny-llama"
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture
def redis_srv() -> Iterator:
    """A real private redis-server on a free loopback port (tests.support.redis.RedisServer), stopped after."""
    import shutil

    from tests.support.redis import RedisServer

    if shutil.which("redis-server") is None:
        pytest.fail("redis-server binary not found: install it (apt-get install -y redis-server); CI does")
    server = RedisServer()
    server.start()
    yield server
    server.stop()


# --- tiny-model decoding tests (test_decoding.py, test_engines.py) ---------------------------------------

_CATALOGUE = (
    "Nike", "Nike Golf", "Adidas", "H&M", "Lancôme", "Best Buy", "Yahoo!", "Sephora", "Apple",
    "Apple Music", "L'Oréal Paris", "Under Armour", "The North Face", "Bath & Body Works", "IKEA",
    "Wayfair", "Etsy", "Target", "Walmart", "Costco", "Ulta Beauty", "Crate & Barrel", "Lululemon",
    "Patagonia", "Zara", "Uniqlo", "Dyson", "Samsung", "Sony", "Nintendo", "Glossier", "Fenty Beauty",
)  # fmt: skip


@pytest.fixture(scope="session")
def catalogue() -> tuple[str, ...]:
    """Advertiser names with awkward BPE (accents, '&', '!', "'", names prefixing others); immutable."""
    return _CATALOGUE


@pytest.fixture(autouse=True)
def _restore_omp_num_threads() -> Iterator[None]:
    """``adprior.threads.configure`` (training, inference workers) sets OMP_NUM_THREADS for child
    processes; a test's choice must not reach later tests' Ray actors or subprocesses."""
    old = os.environ.get("OMP_NUM_THREADS")
    yield
    if old is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = old


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Torch on one thread for the module: tiny matmuls run far faster so than when fighting for two cores."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tokenizer():
    """The real SmolLM2 tokenizer (no weights), so tries and prompts see real BPE tokenizations."""
    from transformers import AutoTokenizer

    from llm_predictor.base_model import ensure_base_model

    return AutoTokenizer.from_pretrained(str(ensure_base_model()))


@pytest.fixture(scope="session")
def tiny_llama() -> Callable:
    """Factory ``tiny_llama(vocab, seed=0)``: a tiny randomly initialised Llama in eval mode."""

    def build(vocab: int, seed: int = 0):
        import torch
        from transformers import LlamaForCausalLM

        from tests.support.tiny_llama import tiny_llama_config

        torch.manual_seed(seed)
        return LlamaForCausalLM(tiny_llama_config(vocab)).eval()

    return build


# --- a small world with behaviour, stats and predictions in a Feast repo (ranking, retrieval) -------

RANKING_ANCHORS = [date(2026, 6, 10), date(2026, 6, 17)]


def utc_midnight(d: date) -> datetime:
    """00:00 UTC of day ``d``."""
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


def _predictions(examples: pd.DataFrame, pool: pd.DataFrame, day: date) -> pd.DataFrame:
    """A predictions partition: past advertisers first, then the preset pool, 20 ids; model_version names the day."""
    rows = []
    for r in examples.itertuples():
        ids = list(dict.fromkeys([*map(int, r.active_advertiser_ids), *map(int, pool["advertiser_id"])]))[:20]
        names = [str(i) for i in ids]
        rows.append(
            {
                "user_id": int(r.user_id),
                "event_timestamp": utc_midnight(day + timedelta(days=1)),
                "created_timestamp": utc_midnight(day + timedelta(days=1)),
                "anchor_date": day,
                "advertiser_ids": ids,
                "advertiser_names": names,
                "raw_names": names,
                "interests": ["shoes"],
                "model_version": f"test@{day.isoformat()}",
                "engine": "test",
                "status": "ok",
                "n_unresolved": 0,
                "raw_output": "",
            }
        )
    return pd.DataFrame(rows)


@pytest.fixture(scope="session")
def ranking_world(tmp_path_factory, spark) -> dict:
    """A small world with behaviour, stats, predictions and heuristic-control lists of two anchors in a fresh
    Feast repo."""
    from adprior import store as st
    from llm_predictor.data.compiled import load_examples, read_preset_pool
    from ranking.config import RankingConfig

    tmp = tmp_path_factory.mktemp("ranking")
    data, ex, cfg = feast_world(
        tmp, RANKING_ANCHORS, users=150, advertisers=60, days=45, seed=11, impression_rate=6.0
    )
    from adprior.controls import HeuristicConfig, write_heuristic

    preds, heuristic = {}, {}
    for day in RANKING_ANCHORS:
        preds[day] = _predictions(load_examples(ex, day), read_preset_pool(ex, day), day)
        st.write_partition(cfg, "llm_predictions", preds[day], f"dt={day.isoformat()}")
        # the consumers' control, by its real writer (adprior.controls), for the same users
        heuristic[day] = write_heuristic(HeuristicConfig(examples=ex, day=day, store=cfg, data=data))
    st.apply(cfg)
    rcfg = RankingConfig(
        data=data,
        store=cfg,
        out=tmp / "models",
        n_estimators=40,
        early_stopping_rounds=10,
        bootstrap_resamples=60,
        threads=1,
    )
    return {"data": data, "store": cfg, "cfg": rcfg, "preds": preds, "heuristic": heuristic, "examples": ex}
