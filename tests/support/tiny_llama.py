"""The shape of the tests' tiny random Llama: 2 layers, hidden size 32, 4 attention heads (2 key/value)."""

from __future__ import annotations

from typing import Any


def tiny_llama_config(vocab_size: int, **overrides: Any):
    """A ``LlamaConfig`` of the tiny shape for ``vocab_size`` tokens (context 2048, bos 1, eos / pad 2);
    ``overrides`` replace or add any LlamaConfig field (``tie_word_embeddings``, token ids, ...)."""
    from transformers import LlamaConfig

    fields: dict[str, Any] = dict(
        vocab_size=vocab_size,
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
    return LlamaConfig(**{**fields, **overrides})
