"""Generation with a Hugging Face causal LM (CPU or GPU), optionally constrained to a catalogue.

:func:`generate` applies the tokenizer's chat template to each prompt (one user message,
``add_generation_prompt=True``), left-pads a batch and decodes greedily, with beam search or by sampling.
For single-advertiser (SFT) models, K beams with ``num_return_sequences=K`` give the K candidates of the
paper's Table 2 ("SFT + beam search"); K samples give "SFT + sampling".

Grammar-constrained decoding
----------------------------
With ``DecodeConfig.constrained`` the output follows the row's grammar (:mod:`llm_predictor.infer.grammar`,
applied by :mod:`llm_predictor.infer.constrain`, xgrammar): ``mode='single'`` one name of the row's allowed
pool then EOS, ``'list'`` ``min_names`` to ``max_names`` distinct names joined by '|' then EOS, ``'answer'``
the whole inference XML (1-5 interests of the vocabulary, exactly ``max_names`` distinct names). Beam search
keeps working: grammar states are kept per generated prefix. A beam that took a masked token (possible when
fewer continuations than beams exist) is dropped from the result, so a row can return fewer than K candidates.
In 'single' mode names are written in their canonical tokenization only (so K beams are K distinct names, not
one name spelled with different tokens), and a candidate cut by ``max_new_tokens`` is dropped.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm import tqdm
from transformers import LogitsProcessorList

from llm_predictor.data.prompts import chat_messages
from llm_predictor.infer.constrain import GrammarLogitsProcessor
from llm_predictor.infer.grammar import answer_spec, per_row_names

log = logging.getLogger(__name__)

STRATEGIES = ("greedy", "beam", "sample")
MODES = ("single", "list", "answer")


@dataclass
class DecodeConfig:
    """How completions are generated."""

    strategy: str = "greedy"  # 'greedy' | 'beam' | 'sample'
    num_beams: int = 1  # beams for 'beam' (K beams and num_return_sequences=K -> K candidates)
    num_return_sequences: int | None = None  # completions per prompt; None: num_beams for 'beam', else 1
    temperature: float = 1.0  # 'sample' only: softmax temperature
    top_p: float = 1.0  # 'sample' only: nucleus mass (1.0 = off)
    top_k: int = 0  # 'sample' only: keep the k most likely tokens (0 = off; transformers' default is 50)
    max_new_tokens: int = 256  # generated tokens per completion (a 20-name XML answer needs ~150-250)
    batch_size: int = 8  # prompts per forward batch (each expands to num_beams / num_return_sequences rows)
    constrained: bool = False  # follow the row's answer grammar (llm_predictor.infer.grammar, xgrammar)
    # constrained output: 'single' (one name) | 'list' (names joined by '|') | 'answer' (the inference XML)
    mode: str = "list"
    max_names: int = 20  # 'list' / 'answer': most names in one completion ('answer': exactly this many)
    min_names: int = 1  # 'list' mode: fewest names before EOS (capped by the pool size)
    max_interests: int = 5  # 'answer' mode: most interests (at least 1 when the vocabulary is not empty)
    separator: str = "|"  # between names (the paper's output format; the grammar always uses '|')
    seed: int = 0  # torch / python RNG seed set once at the start of generate (sampling)
    length_penalty: float = 1.0  # 'beam' only: exponent on the length in beam scores

    def expand(self) -> int:
        """Completions per prompt (rows per prompt inside generate)."""
        if self.num_return_sequences is not None:
            return int(self.num_return_sequences)
        return int(self.num_beams) if self.strategy == "beam" else 1

    def validate(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        n = self.expand()
        if n < 1 or self.num_beams < 1 or self.batch_size < 1 or self.max_new_tokens < 1:
            raise ValueError("num_beams, num_return_sequences, batch_size and max_new_tokens must be >= 1")
        if self.strategy == "greedy" and n != 1:
            raise ValueError(
                "greedy decoding returns one completion; use 'beam' or 'sample' for K candidates"
            )
        if self.strategy == "beam" and n > self.num_beams:
            raise ValueError(f"num_return_sequences ({n}) cannot exceed num_beams ({self.num_beams})")
        if self.mode == "list" and not 1 <= self.min_names <= self.max_names:
            raise ValueError("list mode needs 1 <= min_names <= max_names")
        if self.constrained and self.separator != "|":
            raise ValueError("the answer grammar separates names with '|'")


# --------------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------------


def chat_texts(tokenizer: Any, prompts: Sequence[str]) -> list[str]:
    """Prompts as chat-template text (one user message, generation prompt added)."""
    if getattr(tokenizer, "chat_template", None):
        return [
            tokenizer.apply_chat_template(chat_messages(p), tokenize=False, add_generation_prompt=True)
            for p in prompts
        ]
    return list(prompts)


def eos_pad(tokenizer: Any, model: Any) -> tuple[int, int]:
    """(EOS id, pad id): the tokenizer's, else the model's generation config EOS; pad falls back to EOS."""
    eos = tokenizer.eos_token_id
    if eos is None:
        eos = model.generation_config.eos_token_id
        if isinstance(eos, list):
            eos = eos[0]
    if eos is None:
        raise ValueError("the tokenizer and the model define no EOS token")
    pad = tokenizer.pad_token_id
    if pad is None:
        pad = eos
    return int(eos), int(pad)


def generate_kwargs(cfg: DecodeConfig, eos: int, pad: int) -> dict[str, Any]:
    """The ``model.generate`` keyword arguments of ``cfg``'s strategy (greedy, beam or sample)."""
    kw: dict[str, Any] = {
        "max_new_tokens": cfg.max_new_tokens,
        "num_return_sequences": cfg.expand(),
        "eos_token_id": eos,
        "pad_token_id": pad,
    }
    if cfg.strategy == "sample":
        kw.update(do_sample=True, num_beams=1, temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k)
    elif cfg.strategy == "beam":
        kw.update(
            do_sample=False,
            num_beams=cfg.num_beams,
            early_stopping="never",
            length_penalty=cfg.length_penalty,
            temperature=None,
            top_p=None,
            top_k=None,
        )
    else:
        kw.update(do_sample=False, num_beams=1, temperature=None, top_p=None, top_k=None)
    return kw


def specs_for(
    cfg: DecodeConfig, pools: Sequence[Sequence[str]] | None, n: int, interests: Sequence[str] = ()
) -> list[Any] | None:
    """One :class:`~llm_predictor.infer.grammar.AnswerSpec` per prompt (None when unconstrained)."""
    if not cfg.constrained:
        return None
    if pools is None:
        raise ValueError("constrained decoding needs allowed_names")
    return [
        answer_spec(
            pool,
            interests,
            mode=cfg.mode,
            max_names=cfg.max_names,
            min_names=cfg.min_names if cfg.mode == "list" else None,
            max_interests=cfg.max_interests,
        )
        for pool in pools
    ]


def generate(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    cfg: DecodeConfig | None = None,
    allowed_names: list[list[str]] | list[str] | None = None,
    interests: Sequence[str] = (),
) -> list[list[str]]:
    """Completions per prompt: ``cfg.expand()`` of them (1 for greedy; K for K beams or K samples).

    ``allowed_names``: per prompt a list of names, or one list shared by all prompts; required with
    ``cfg.constrained``, where every completion follows the row's grammar: ``name`` ('single'),
    ``name|name|...`` ('list') or the XML answer ('answer', interests from ``interests``). Invalid
    constrained candidates (possible with beam search) are dropped, as are duplicates among one prompt's
    candidates in 'single' mode. A row whose pool holds no usable name gets no candidate.
    """
    cfg = cfg or DecodeConfig()
    cfg.validate()
    per_row = per_row_names(allowed_names, len(prompts)) if cfg.constrained else None
    specs = specs_for(cfg, per_row, len(prompts), interests)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    eos, pad = eos_pad(tokenizer, model)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token_id = pad
    expand = cfg.expand()
    texts = chat_texts(tokenizer, prompts)
    device = getattr(model, "device", torch.device("cpu"))
    vocab = int(model.config.vocab_size)
    was_training = model.training
    model.eval()
    out: list[list[str]] = [[] for _ in prompts]
    runnable = [i for i in range(len(prompts)) if specs is None or specs[i].names]
    try:
        for start in tqdm(
            range(0, len(runnable), cfg.batch_size),
            desc="generate",
            unit="batch",
            disable=None,
            total=math.ceil(len(runnable) / cfg.batch_size),
        ):
            idx = runnable[start : start + cfg.batch_size]
            enc = tokenizer(
                [texts[i] for i in idx],
                add_special_tokens=False,
                padding=True,
                padding_side="left",
                return_tensors="pt",
            )
            enc = {k: v.to(device) for k, v in enc.items()}
            prompt_len = enc["input_ids"].shape[1]
            kw = generate_kwargs(cfg, eos, pad)
            proc = None
            if specs is not None:
                rows_per_prompt = cfg.num_beams if cfg.strategy == "beam" else expand  # beams run as rows
                proc = GrammarLogitsProcessor(
                    tokenizer, [specs[i] for i in idx], rows_per_prompt, prompt_len, eos, pad, vocab
                )
                kw["logits_processor"] = LogitsProcessorList([proc])
            with torch.no_grad():
                seqs = model.generate(**enc, **kw)
            gen = seqs[:, prompt_len:].tolist()
            for b, i in enumerate(idx):
                cands: list[str] = []
                for j in range(expand):
                    ids = strip_after_eos(gen[b * expand + j], eos)
                    if proc is not None:
                        status = proc.result(b, ids)
                        if status == "invalid" or (status != "ok" and cfg.mode == "single"):
                            continue
                    text = tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
                    if text and (cfg.mode != "single" or proc is None or text not in cands):
                        cands.append(text)
                out[i] = cands
    finally:
        if was_training:
            model.train()
    return out


def strip_after_eos(ids: list[int], eos: int) -> list[int]:
    """Generated ids up to and including the first EOS (the rest is padding)."""
    return ids[: ids.index(eos) + 1] if eos in ids else ids


def load_model(path: str | Any, device: str = "auto", dtype: str = "auto") -> tuple[Any, Any]:
    """(model, tokenizer) from a local HF folder; device 'auto' = cuda if available; bf16 on GPU."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    if dtype == "auto":
        torch_dtype = torch.bfloat16 if dev.startswith("cuda") else torch.float32
    else:
        torch_dtype = getattr(torch, dtype)
    tok = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch_dtype).to(dev)
    model.eval()
    return model, tok
