"""Continued pre-training with SID tokens (train.cpt, train.cpt_corpus): tokens, phase-1 freezing, phase 2."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from llm_predictor.sid.artifacts import load_sid_map, load_sid_tokens
from llm_predictor.sid.attach import attach_sid_sequences
from llm_predictor.sid.build import build_sids
from llm_predictor.train.config import CPTConfig
from llm_predictor.train.cpt import add_sid_tokens, freeze_all_but_rows, train_cpt
from llm_predictor.train.cpt_corpus import cpt_texts
from tests.support.sid import X1, X2, example_row, hash_embed, make_raw, tiny_sid_config, write_examples
from tests.support.tiny_llama import tiny_llama_config


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread: None) -> Iterator[None]:
    yield


@pytest.fixture(scope="module")
def sid_data(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("cpt")
    raw = make_raw(root / "raw")
    build_sids(tiny_sid_config(raw, root / "sids"), embed_fn=hash_embed)
    examples = write_examples(
        root / "examples",
        {
            X1: [example_row(1, label="Nike"), example_row(3, split="eval", label="IKEA")],
            X2: [example_row(1, label="IKEA")],
        },
    )
    attach_sid_sequences(examples, raw, root / "sids", root / "examples_sid")
    return {"sids": root / "sids", "examples": root / "examples_sid", "root": root}


@pytest.fixture(scope="module")
def tied_model_dir(tmp_path_factory, tokenizer) -> Path:
    """A tiny Llama whose LM head is tied to the input embeddings, as in SmolLM2."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(1)
    cfg = tiny_llama_config(len(tokenizer), max_position_embeddings=512, tie_word_embeddings=True)
    path = tmp_path_factory.mktemp("tied") / "tiny-tied"
    LlamaForCausalLM(cfg).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def _cfg(sid_data: dict, model: Path, out: Path, phase: int, **kw) -> CPTConfig:
    base = {
        "max_steps": 2,
        "per_device_train_batch_size": 4,
        "max_length": 48,
        "disable_tqdm": True,
        "learning_rate": 1e-2 if phase == 1 else 1e-3,
    }
    return CPTConfig(
        phase=phase,
        model=model,
        sids=sid_data["sids"],
        examples=sid_data["examples"],
        output_dir=out,
        **{**base, **kw},
    )


def test_add_sid_tokens_mean_init_and_tying(tied_model_dir: Path, sid_data: dict) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tied_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tied_model_dir)
    old = model.get_input_embeddings().weight.detach().clone()
    tokens = load_sid_tokens(sid_data["sids"])
    ids = add_sid_tokens(model, tok, tokens)
    v = old.shape[0]
    assert ids == list(range(v, v + len(tokens)))
    w = model.get_input_embeddings().weight
    assert w.shape[0] == v + len(tokens) == len(tok)
    assert model.get_output_embeddings().weight is w  # still tied
    assert torch.equal(w[:v], old)
    torch.testing.assert_close(w[v:], old.mean(0).expand(len(tokens), -1))
    assert add_sid_tokens(model, tok, tokens) == ids and len(tok) == v + len(tokens)  # idempotent
    # Freezing: only the embedding weight trains, through a row mask.
    freeze_all_but_rows(model, ids)
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["model.embed_tokens.weight"]
    model(
        input_ids=torch.tensor([[5, ids[0], 7, ids[3]]]), labels=torch.tensor([[5, ids[0], 7, ids[3]]])
    ).loss.backward()
    g = w.grad
    assert g[:v].abs().sum() == 0 and g[v:].abs().sum() > 0


def test_cpt_texts_mix(sid_data: dict) -> None:
    m = load_sid_map(sid_data["sids"])
    texts1, c1 = cpt_texts(_cfg(sid_data, Path("unused"), Path("unused"), 1))
    assert c1["general_texts"] == 0 and c1["item_texts"] == 2 * len(m)
    assert c1["sequence_texts"] >= 2  # train split only: user 1 on both dates
    assert all("<a_" in t for t in texts1)
    seq = [t for t in texts1 if t.startswith("A user converted with")]
    # Labels of the train split only: user 1 on X1 (Nike) and X2 (IKEA); user 3 (eval) adds none.
    assert sorted(t.rsplit(": ", 1)[1] for t in seq if "Next advertiser:" in t) == ["IKEA.", "Nike."]
    texts2, c2 = cpt_texts(_cfg(sid_data, Path("unused"), Path("unused"), 2, general_fraction=0.5))
    assert c2["general_texts"] == c2["recommendation_texts"]
    assert sum("<a_" not in t for t in texts2) == c2["general_texts"]


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_phase1_trains_only_sid_rows(
    tied: bool, tied_model_dir: Path, tiny_model_dir: Path, sid_data: dict, tmp_path: Path
) -> None:
    src = tied_model_dir if tied else tiny_model_dir
    out = tmp_path / "cpt1"
    metrics = train_cpt(_cfg(sid_data, src, out, 1))
    assert metrics["steps"] == 2 and metrics["tied_embeddings"] is tied
    assert metrics["frozen_rows_max_abs_change"] == 0.0 and metrics["sid_rows_mean_abs_change"] > 0
    before, after = _weights(src), _weights(out)
    v = before["model.embed_tokens.weight"].shape[0]
    assert set(after) == set(before)
    for name, w0 in before.items():
        w1 = after[name]
        if name in ("model.embed_tokens.weight", "lm_head.weight"):
            assert w1.shape[0] == v + metrics["sid_tokens"]
            assert torch.equal(w1[:v], w0), name  # text-token rows bit-identical
            assert not torch.equal(w1[v:], w1[v:][:1].expand_as(w1[v:])), name  # SID rows moved apart
        else:
            assert torch.equal(w1, w0), name  # every other weight bit-identical
    # The saved folder reloads with the SID tokens, each one token.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out)
    sid = load_sid_map(sid_data["sids"])["sid"].iloc[0]
    ids = tok(sid, add_special_tokens=False)["input_ids"]
    assert len(ids) == 3 and all(i >= v for i in ids)
    assert len(tok) == v + metrics["sid_tokens"]
    assert tok.chat_template  # phase 3 (train_sft) needs it
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.get_input_embeddings().weight.shape[0] == len(tok)
    assert (model.get_output_embeddings().weight is model.get_input_embeddings().weight) is tied


def test_phase2_changes_all_weights_and_phase3_prompts(
    tiny_model_dir: Path, sid_data: dict, tmp_path: Path
) -> None:
    p1 = tmp_path / "cpt1"
    train_cpt(_cfg(sid_data, tiny_model_dir, p1, 1, max_steps=1))
    p2 = tmp_path / "cpt2"
    metrics = train_cpt(_cfg(sid_data, p1, p2, 2, general_fraction=0.3))
    assert metrics["sid_tokens_added"] == 0 and metrics["general_texts"] > 0
    assert metrics["params_trainable"] == metrics["params_total"]
    before, after = _weights(p1), _weights(p2)
    v = before["model.embed_tokens.weight"].shape[0] - metrics["sid_tokens"]
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert (
        "model.layers.0.mlp.down_proj.weight" in changed
        and "model.layers.1.self_attn.q_proj.weight" in changed
    )
    assert not torch.equal(before["model.embed_tokens.weight"][:v], after["model.embed_tokens.weight"][:v])
    # Phase 3: the SFT data of the SID-aware template, tokenized by the CPT folder's tokenizer, holds SID tokens.
    from llm_predictor.train.common import load_tokenizer
    from llm_predictor.train.config import SFTRunConfig
    from llm_predictor.train.sft import prepare_sft_data

    tok = load_tokenizer(str(p2))
    ds, _ = prepare_sft_data(SFTRunConfig(examples=sid_data["examples"], model=p2, template="sft_sid"), tok)
    prompt = ds[0]["prompt"][0]["content"]
    assert "SID Sequences [<a_" in prompt
    ids = tok.apply_chat_template(ds[0]["prompt"], tokenize=True)
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    assert any(i >= v for i in ids)
