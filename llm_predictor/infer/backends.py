"""Pick the backend an :class:`EngineConfig` names and load it: transformers or vLLM.

The one place that knows both engine classes, so that neither engine module imports the other and the
engine interface (``engines.py``) imports neither; vLLM is imported only when it is asked for.
"""

from __future__ import annotations

from llm_predictor.infer.engines import Engine, EngineConfig


def make_engine(cfg: EngineConfig) -> Engine:
    """The engine ``cfg.kind`` names, with its model loaded."""
    cfg.validate()
    if cfg.kind == "vllm":
        from llm_predictor.infer.vllm_engine import VLLMEngine

        return VLLMEngine(cfg)
    from llm_predictor.infer.hf_engine import TransformersEngine

    return TransformersEngine(cfg)
