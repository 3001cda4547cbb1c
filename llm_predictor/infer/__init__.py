"""Stage 3, inference: engines (transformers, vLLM), the answer grammar, the nightly shard batch."""
