"""The GRPO reward of paper eq. 1-5 (design.md "GRPO reward"), as a TRL reward function.

    R_total   = R_match - P_len(n_adv, 20) - P_len(n_interest, 5)                       (1)
    R_match   = R_base(i) + R_bonus(i) if the label is at position i, else 0              (2)
    R_base(i) = 0.1 * (20 - i)                                                            (3)
    R_bonus(i)= 2.0 if i <= 4 else 0                                                      (4)
    P_len(n, n*) = 0 if n == n* else min(0.1 * |n - n*|, 1.0) + 1.0                       (5)

Choices the paper leaves open (all in :class:`RewardConfig`):

* **Position base.** ``i`` is 1-based by default (the first advertiser has i = 1, R_match = 1.9 + 2.0);
  ``position_base=0`` counts from 0 (the first has i = 0, R_match = 2.0 + 2.0, and the bonus then covers
  the first five positions, i = 0..4).
* **What i counts.** The completion is parsed with :func:`llm_predictor.data.parsing.parse_answer`; ``i`` is the
  label's rank in the predicted list *after* de-duplication (case-insensitive, then by
  :func:`llm_predictor.data.resolver.normalize_name`), i.e. the position of its first occurrence among the
  distinct names, which is also how Recall@K ranks predictions. Only the first ``max_rank`` (20) distinct
  names form the predicted list: a label further down counts as absent (R_match = 0), so R_base is never
  negative.
* **What n counts.** ``n_adv`` and ``n_interest`` are the raw numbers of non-empty items the model listed,
  *before* de-duplication: the penalty is about format adherence, so 20 items of which two are duplicates
  pass the count (duplicates still cost ranking positions for distinct names).
* **Matching.** Predicted name and label match when their ``normalize_name`` keys are equal ('nike' matches
  'Nike', 'Nike, Inc.' matches 'Nike'); with ``normalize=False`` a case-insensitive exact comparison is used.
* **Unparseable output** (no advertiser list at all, parser status 'unparseable'): R_match = 0, n_adv = 0
  and n_interest = 0, so with the defaults R_total = -P_len(0, 20) - P_len(0, 5) = -2.0 - 1.5 = **-3.5**.
  (The lowest possible total is -4.0, e.g. 40+ advertisers and 15+ interests.)
* A missing label (None / empty) gives R_match = 0; the length penalties still apply.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from llm_predictor.data.parsing import parse_answer
from llm_predictor.data.resolver import normalize_name


@dataclass(frozen=True)
class RewardConfig:
    """Parameters of paper eq. 1-5; the defaults are the paper's values."""

    position_base: int = 1  # i of the first predicted advertiser: 1 (default) or 0
    n_adv: int = 20  # n* of the advertiser count penalty (eq. 1)
    n_interest: int = 5  # n* of the interest count penalty (eq. 1)
    base_top: float = 20.0  # the "20" of R_base(i) = base_slope * (base_top - i) (eq. 3)
    base_slope: float = 0.1  # the "0.1" of eq. 3
    bonus: float = 2.0  # R_bonus for i <= bonus_top (eq. 4)
    bonus_top: int = 4  # last position i that earns the bonus (eq. 4), in the position_base numbering
    len_slope: float = 0.1  # the "0.1" of eq. 5
    len_cap: float = 1.0  # the "1.0" cap of eq. 5
    len_offset: float = 1.0  # the "+ 1.0" of eq. 5 (any count mismatch costs at least this)
    max_rank: int | None = 20  # distinct names forming the predicted list; None = all listed
    normalize: bool = True  # match by resolver.normalize_name; False = case-insensitive exact match
    allow_bare_list: bool = False  # also read a tag-free '|' list (the sft_text_20 format) as advertisers

    def __post_init__(self) -> None:
        if self.position_base not in (0, 1):
            raise ValueError(f"position_base must be 0 or 1, got {self.position_base}")


DEFAULT_CONFIG = RewardConfig()


@dataclass(frozen=True)
class RewardBreakdown:
    """Every term of eq. 1 for one completion."""

    total: float  # R_total
    r_match: float  # R_match (0 when the label is absent)
    p_adv: float  # P_len(n_adv, n*_adv)
    p_interest: float  # P_len(n_interest, n*_interest)
    rank: int | None  # 1-based rank of the label among the distinct predicted names; None if absent
    n_adv: int  # advertiser items listed (raw, before de-duplication)
    n_interest: int  # interest items listed (raw, before de-duplication)
    status: str  # parser status: 'ok' | 'partial' | 'unparseable'


def length_penalty(n: int, target: int, config: RewardConfig = DEFAULT_CONFIG) -> float:
    """P_len(n, n*) of eq. 5: 0 if ``n == target`` else ``min(0.1 * |n - n*|, 1.0) + 1.0``."""
    if n == target:
        return 0.0
    return min(config.len_slope * abs(n - target), config.len_cap) + config.len_offset


def match_reward(rank: int | None, config: RewardConfig = DEFAULT_CONFIG) -> float:
    """R_match of eq. 2-4 for the label's 1-based ``rank`` (None = absent -> 0)."""
    if rank is None:
        return 0.0
    if config.max_rank is not None and rank > config.max_rank:
        return 0.0
    i = rank - 1 + config.position_base
    return config.base_slope * (config.base_top - i) + (config.bonus if i <= config.bonus_top else 0.0)


def completion_text(completion: Any) -> str:
    """The text of a TRL completion: a string, or chat messages ``[{"role": "assistant", "content": ...}]``.

    With several messages the assistant messages are joined (all messages if none is marked assistant);
    content given as parts (``[{"type": "text", "text": ...}]``) is joined too.
    """
    if completion is None:
        return ""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    messages = list(completion)
    assistant = [m for m in messages if isinstance(m, dict) and m.get("role") == "assistant"]
    texts = []
    for message in assistant or messages:
        content = message.get("content", "") if isinstance(message, dict) else message
        if isinstance(content, list):
            content = "".join(
                part.get("text", "") if isinstance(part, dict) else str(part) for part in content
            )
        texts.append("" if content is None else str(content))
    return "\n".join(texts)


def _key(name: Any, normalize: bool) -> str:
    if name is None:
        return ""
    return normalize_name(name) if normalize else " ".join(str(name).split()).casefold()


def score_completion(
    completion: Any, label: str | None, config: RewardConfig = DEFAULT_CONFIG
) -> RewardBreakdown:
    """All terms of eq. 1 for one completion (string or chat messages) and its label advertiser name."""
    parsed = parse_answer(
        completion_text(completion),
        max_advertisers=1 << 30,  # keep every distinct name: the rank cut is max_rank
        max_interests=1 << 30,
        allow_bare_list=config.allow_bare_list,
    )
    if parsed.status == "unparseable":
        n_adv = n_interest = 0
        rank = None
    else:
        n_adv, n_interest = parsed.n_advertisers_raw, parsed.n_interests_raw
        rank = None
        label_key = _key(label, config.normalize)
        if label_key:
            seen: set[str] = set()
            for name in parsed.advertisers:
                key = _key(name, config.normalize)
                if not key or key in seen:
                    continue
                seen.add(key)
                if key == label_key:
                    rank = len(seen)
                    break
    if rank is not None and config.max_rank is not None and rank > config.max_rank:
        rank = None  # beyond the predicted list: absent
    r_match = match_reward(rank, config)
    p_adv = length_penalty(n_adv, config.n_adv, config)
    p_interest = length_penalty(n_interest, config.n_interest, config)
    return RewardBreakdown(
        total=r_match - p_adv - p_interest,
        r_match=r_match,
        p_adv=p_adv,
        p_interest=p_interest,
        rank=rank,
        n_adv=n_adv,
        n_interest=n_interest,
        status=parsed.status,
    )


def _labels(label_advertiser_name: Any, n: int) -> list[Any]:
    if label_advertiser_name is None or isinstance(label_advertiser_name, str):
        return [label_advertiser_name] * n
    labels = list(label_advertiser_name)
    if len(labels) != n:
        raise ValueError(f"{len(labels)} labels for {n} completions")
    return labels


def _score_batch(
    completions: Sequence[Any], label_advertiser_name: Any, config: RewardConfig, kwargs: dict[str, Any]
) -> list[float]:
    labels = _labels(label_advertiser_name, len(completions))
    parts = [score_completion(c, lab, config) for c, lab in zip(completions, labels, strict=True)]
    log_metric = kwargs.get("log_metric")
    if callable(log_metric) and parts:  # TRL >= 1.x passes a scalar logger to reward functions
        n = len(parts)
        log_metric("reward_parts/match", sum(p.r_match for p in parts) / n)
        log_metric("reward_parts/hit_rate", sum(p.rank is not None for p in parts) / n)
        log_metric("reward_parts/adv_len_penalty", sum(p.p_adv for p in parts) / n)
        log_metric("reward_parts/interest_len_penalty", sum(p.p_interest for p in parts) / n)
        log_metric("reward_parts/unparseable_rate", sum(p.status == "unparseable" for p in parts) / n)
    return [p.total for p in parts]


def paper_reward(completions: Sequence[Any], label_advertiser_name: Any, **kwargs: Any) -> list[float]:
    """TRL reward function: R_total of paper eq. 1-5 with the default :class:`RewardConfig`.

    Args:
        completions: generated completions, strings or chat message lists
            (``[{"role": "assistant", "content": "..."}]``), as TRL passes them.
        label_advertiser_name: the label advertiser name of each completion (the dataset column, aligned
            with ``completions``); a single string applies to all.
        **kwargs: the other columns and TRL extras (``prompts``, ``completion_ids``, ``trainer_state``,
            ``log_metric``, ...); ``log_metric``, when given, receives the mean of each reward term.

    Returns:
        One float per completion.
    """
    return _score_batch(completions, label_advertiser_name, DEFAULT_CONFIG, kwargs)


def make_reward(config: RewardConfig = DEFAULT_CONFIG, name: str | None = None) -> Callable[..., list[float]]:
    """A TRL reward function for ``config``, named ``name`` (TRL logs it as ``rewards/<name>/mean``).

    Args:
        config: the reward parameters.
        name: the function's ``__name__``; default 'paper_reward' for the default config, else
            'paper_reward_custom'.

    Returns:
        ``f(completions, label_advertiser_name, **kwargs) -> list[float]``.
    """
    if config == DEFAULT_CONFIG and name is None:
        return paper_reward

    def reward(completions: Sequence[Any], label_advertiser_name: Any, **kwargs: Any) -> list[float]:
        return _score_batch(completions, label_advertiser_name, config, kwargs)

    reward.__name__ = reward.__qualname__ = name or "paper_reward_custom"
    reward.__doc__ = f"R_total of paper eq. 1-5 with {config}."
    return reward
