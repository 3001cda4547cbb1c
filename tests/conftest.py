"""Shared fixtures: one real local Spark session per test run, and raw-table writers."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


@pytest.fixture(scope="session")
def spark() -> Iterator:
    from adprior.io import SparkConfig, get_spark

    s = get_spark(SparkConfig(master="local[2]", shuffle_partitions=4, driver_memory="2g"))
    yield s
    s.stop()


def compiled_world(root: Path, spark, anchors: list[date], **world: object) -> tuple[Path, Path]:
    """Simulate a small world under ``root/world`` (``world`` = WorldConfig fields) and compile its examples
    for ``anchors`` under ``root/ex`` with the session's Spark; returns (raw data folder, examples folder)."""
    from llm_predictor.data.compile import CompileConfig, compile_examples
    from world.config import WorldConfig
    from world.simulate import simulate

    data, ex = root / "world", root / "ex"
    simulate(WorldConfig(out=data, end_date=date(2026, 6, 30), **world))  # type: ignore[arg-type]
    compile_examples(CompileConfig(data=data, out=ex, anchor_dates=anchors, tokenizer=None), spark=spark)
    return data, ex


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


def ts(text: str) -> datetime:
    """'2026-06-10 23:59:59' -> aware UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


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
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from llm_predictor.base_model import ensure_base_model

    tok = AutoTokenizer.from_pretrained(str(ensure_base_model()))
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )
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
        from transformers import LlamaConfig, LlamaForCausalLM

        torch.manual_seed(seed)
        cfg = LlamaConfig(
            vocab_size=vocab,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=2048,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=2,
        )
        return LlamaForCausalLM(cfg).eval()

    return build


# --- a small world with behaviour, stats and predictions in a Feast repo (ranking, retrieval) -------

RANKING_ANCHORS = [date(2026, 6, 10), date(2026, 6, 17)]


def _utc_midnight(d: date) -> datetime:
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
                "event_timestamp": _utc_midnight(day + timedelta(days=1)),
                "created_timestamp": _utc_midnight(day + timedelta(days=1)),
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
    """A small world with behaviour, stats and predictions of two anchors in a fresh Feast repo."""
    from adprior import store as st
    from adprior.io import SparkConfig
    from llm_predictor.data.compile import CompileConfig, compile_examples
    from llm_predictor.data.compiled import load_examples, read_preset_pool
    from ranking.config import RankingConfig
    from world.config import WorldConfig
    from world.simulate import simulate

    tmp = tmp_path_factory.mktemp("ranking")
    data = tmp / "world"
    simulate(
        WorldConfig(
            out=data,
            users=150,
            advertisers=60,
            days=45,
            end_date=date(2026, 6, 30),
            seed=11,
            impression_rate=6.0,
        )
    )
    cfg = st.StoreConfig(repo=tmp / "feature_repo")
    st.init_repo(cfg.repo)
    ex = tmp / "examples"
    compile_examples(
        CompileConfig(
            data=data,
            out=ex,
            anchor_dates=RANKING_ANCHORS,
            tokenizer=None,
            spark=SparkConfig(master="local[2]"),
        )
    )
    preds = {}
    for day in RANKING_ANCHORS:
        examples = load_examples(ex, day)
        st.write_daily_features(cfg, data, examples, day)
        preds[day] = _predictions(examples, read_preset_pool(ex, day), day)
        st.write_partition(cfg, "llm_predictions", preds[day], f"dt={day.isoformat()}")
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
    return {"data": data, "store": cfg, "cfg": rcfg, "preds": preds, "examples": ex}
