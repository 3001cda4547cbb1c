"""Two-group comparison of per-user outcomes: relative change, bootstrap interval, permutation p-value.

Metrics are ratios of group sums (``sum(numerator) / sum(denominator)`` over the group's users), so
means per user (denominator = 1 per user), CTR (clicks / impressions) and RoAS (revenue / spend) are
handled alike. The unit of resampling is the user (the unit of randomisation): intervals come from
``scipy.stats.bootstrap`` (independent resampling of each group, percentile method) and p-values
from ``scipy.stats.permutation_test`` (group labels shuffled across users, two-sided). The
permutation statistic is the difference of the metric between the groups: the same null hypothesis
as a zero relative change, and still defined when control is 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import bootstrap, permutation_test


@dataclass(frozen=True)
class Comparison:
    """Treatment versus control on one metric."""

    control: float  # the metric in control (ratio of sums)
    treatment: float  # the metric in treatment
    rel_change: float  # treatment / control - 1 (NaN when control is 0)
    ci_low: float  # lower bound of the interval of rel_change
    ci_high: float  # upper bound
    p_value: float  # two-sided permutation p-value of rel_change = 0
    n_control: int  # users in control
    n_treatment: int  # users in treatment


def _interval(res: object, confidence: float) -> tuple[float, float]:
    """Percentile interval of a ``scipy.stats.bootstrap`` result over the resamples that are not NaN
    (a resample whose control metric is 0 has no relative change)."""
    dist = np.asarray(res.bootstrap_distribution, dtype=float)  # type: ignore[attr-defined]
    alpha = (1 - confidence) / 2
    if not np.isfinite(dist).any():
        return float("nan"), float("nan")
    lo, hi = np.nanquantile(dist, [alpha, 1 - alpha])
    return float(lo), float(hi)


def _ratio(num: np.ndarray, den: np.ndarray) -> float:
    d = den.sum()
    return float(num.sum() / d) if d > 0 else float("nan")


def _rel_change(control: float, treatment: float) -> float:
    """``treatment / control - 1``; NaN when control is 0 or NaN."""
    return treatment / control - 1.0 if control and not np.isnan(control) else float("nan")


def _comparison(
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    rel_change: float,
    ci: object,
    perm: object,
    confidence: float,
) -> Comparison:
    """The Comparison of the per-user ``arrays`` (num_c, den_c, num_t, den_t), given the point estimate
    and the ``scipy.stats`` bootstrap and permutation results."""
    num_c, den_c, num_t, den_t = arrays
    lo, hi = _interval(ci, confidence)
    return Comparison(
        control=_ratio(num_c, den_c),
        treatment=_ratio(num_t, den_t),
        rel_change=rel_change,
        ci_low=lo,
        ci_high=hi,
        p_value=float(perm.pvalue),  # type: ignore[attr-defined]
        n_control=len(num_c),
        n_treatment=len(num_t),
    )


def compare_groups(
    num_c: np.ndarray,
    den_c: np.ndarray,
    num_t: np.ndarray,
    den_t: np.ndarray,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Comparison:
    """Relative change of ``sum(num) / sum(den)`` from control to treatment, per-user arrays.

    Args:
        num_c, den_c: per-user numerator and denominator in control (e.g. conversions and ones).
        num_t, den_t: the same in treatment.
        resamples: bootstrap and permutation resamples.
        confidence: interval level.
        seed: random seed of both procedures.

    Raises:
        ValueError: arrays of one group differ in length, or a group is empty.
    """
    num_c, den_c, num_t, den_t = (np.asarray(a, dtype=float) for a in (num_c, den_c, num_t, den_t))
    if len(num_c) != len(den_c) or len(num_t) != len(den_t):
        raise ValueError("numerator and denominator arrays of a group must have the same length")
    if len(num_c) == 0 or len(num_t) == 0:
        raise ValueError(f"empty group: control has {len(num_c)} users, treatment {len(num_t)}")

    def rel(ic: np.ndarray, it: np.ndarray) -> float:
        return _rel_change(_ratio(num_c[ic], den_c[ic]), _ratio(num_t[it], den_t[it]))

    ic0, it0 = np.arange(len(num_c)), np.arange(len(num_t))
    point = rel(ic0, it0)
    ci = bootstrap(
        (ic0, it0),
        rel,
        vectorized=False,
        paired=False,
        n_resamples=resamples,
        confidence_level=confidence,
        method="percentile",
        random_state=seed,
    )
    # Permutation: pool the users, reassign group labels; the statistic is the same relative change.
    num = np.concatenate([num_c, num_t])
    den = np.concatenate([den_c, den_t])
    n_c = len(num_c)

    def stat(x: np.ndarray, y: np.ndarray) -> float:  # x, y: pooled-user indices of the two groups
        # the difference (not the ratio) of the metrics: the same null, defined when control is 0
        d = _ratio(num[y.astype(int)], den[y.astype(int)]) - _ratio(num[x.astype(int)], den[x.astype(int)])
        return 0.0 if np.isnan(d) else d

    pooled = np.arange(len(num), dtype=float)
    perm = permutation_test(
        (pooled[:n_c], pooled[n_c:]),
        stat,
        permutation_type="independent",
        vectorized=False,
        n_resamples=resamples,
        alternative="two-sided",
        random_state=seed,
    )
    return _comparison((num_c, den_c, num_t, den_t), point, ci, perm, confidence)


def compare_paired(
    num_c: np.ndarray,
    den_c: np.ndarray,
    num_t: np.ndarray,
    den_t: np.ndarray,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Comparison:
    """Like :func:`compare_groups`, but each user was measured under both policies (a counterfactual
    simulation): users are resampled in pairs, and the permutation swaps each user's two values.

    Raises:
        ValueError: the four arrays differ in length, or are empty.
    """
    arrs = [np.asarray(a, dtype=float) for a in (num_c, den_c, num_t, den_t)]
    if len({len(a) for a in arrs}) != 1:
        raise ValueError("paired comparison: all four per-user arrays must have the same length")
    if len(arrs[0]) == 0:
        raise ValueError("paired comparison: no users")
    num_c, den_c, num_t, den_t = arrs

    def rel(i: np.ndarray) -> float:
        i = i.astype(int)
        return _rel_change(_ratio(num_c[i], den_c[i]), _ratio(num_t[i], den_t[i]))

    idx = np.arange(len(num_c))
    ci = bootstrap(
        (idx,),
        rel,
        vectorized=False,
        n_resamples=resamples,
        confidence_level=confidence,
        method="percentile",
        random_state=seed,
    )
    # Sign-flip permutation: swap control and treatment within each user, statistic = difference of ratios.
    both_num, both_den = np.stack([num_c, num_t]), np.stack([den_c, den_t])

    def stat(a: np.ndarray, b: np.ndarray) -> float:  # a, b: 0/1 rows per user after the swap
        ia, ib = a.astype(int), b.astype(int)
        d = _ratio(both_num[ib, idx], both_den[ib, idx]) - _ratio(both_num[ia, idx], both_den[ia, idx])
        return 0.0 if np.isnan(d) else d

    perm = permutation_test(
        (np.zeros(len(idx)), np.ones(len(idx))),
        stat,
        permutation_type="samples",
        vectorized=False,
        n_resamples=resamples,
        alternative="two-sided",
        random_state=seed,
    )
    return _comparison((num_c, den_c, num_t, den_t), rel(idx), ci, perm, confidence)
