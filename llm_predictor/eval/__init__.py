"""Stage 4, evaluation: metrics, non-LLM baselines and the reranker, LLM runs, statistics, reports."""
