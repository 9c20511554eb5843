"""Statistics of a search as pure functions of plain numbers (layer 0: no torch; ``scipy.stats`` does the maths).

* rank agreement of two scorings: ``kendall_tau`` (tau-b, ties handled), ``spearman_rho`` (average ranks),
  ``pearson``, ``ranks``, ``top_k_overlap``, ``top_k_regret``;
* comparisons over seeds: ``mean_std`` (numpy), ``welch_t_test``, ``paired_t_test`` (two-sided; ``{"t", "df", "p"}``),
  ``t_two_sided_p``;
* the collapse rule: ``PARAMETER_FREE``, ``parameter_free_share``, ``collapse_threshold``, ``is_collapsing``,
  ``collapse_warning`` and ``policy_op_freq`` (one rule for the search log and the report).

Degenerate inputs give NaN rather than an exception or a scipy warning: a constant sequence has no rank
correlation, a t-test needs two values per group, and a zero spread gives t = +-inf (p = 0) when the means differ,
NaN when they do not. scipy is imported on first use (it takes about half a second), so importing this module stays
cheap for the command line and the report.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

from .spaces.base import PARAMETER_FREE
from .viz.plots import finite

__all__ = ["PARAMETER_FREE", "COLLAPSE_MARGIN", "kendall_tau", "spearman_rho", "pearson", "ranks", "top_k_overlap",
           "top_k_regret", "mean_std", "t_two_sided_p", "welch_t_test", "paired_t_test", "parameter_free_share",
           "collapse_threshold", "is_collapsing", "collapse_warning", "policy_op_freq"]


def _scipy_stats():
    import scipy.stats
    return scipy.stats


def _check_pair(x: Sequence[float], y: Sequence[float]) -> None:
    if len(x) != len(y):
        raise ValueError(f"need two sequences of the same length, got {len(x)} and {len(y)}")


def _varies(v: Sequence[float]) -> bool:
    return len(v) >= 2 and any(a != v[0] for a in v)


# ------------------------------------------------------------------------------------------ rank agreement
def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b: (concordant - discordant) / sqrt((n0 - ties_x) (n0 - ties_y)); NaN if either is constant."""
    _check_pair(x, y)
    if not (_varies(x) and _varies(y)):
        return math.nan
    return float(_scipy_stats().kendalltau(x, y, variant="b")[0])


def ranks(x: Sequence[float]) -> list[float]:
    """1-based ranks; ties get the average of the ranks they span."""
    return [float(r) for r in _scipy_stats().rankdata(list(x), method="average")] if len(x) else []


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson's correlation; NaN if either sequence is constant (or has fewer than two values)."""
    _check_pair(x, y)
    if not (_varies(x) and _varies(y)):
        return math.nan
    return float(_scipy_stats().pearsonr(x, y)[0])


def spearman_rho(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho: Pearson's correlation of the (average) ranks; NaN if either sequence is constant."""
    _check_pair(x, y)
    if not (_varies(x) and _varies(y)):
        return math.nan
    return float(_scipy_stats().spearmanr(x, y)[0])


def _top(v: Sequence[float], k: int) -> list[int]:
    """Indices of the ``k`` highest values, ties broken by index."""
    return sorted(range(len(v)), key=lambda i: (-v[i], i))[:k]


def top_k_overlap(pred: Sequence[float], true: Sequence[float], k: int) -> float:
    """Fraction of the true top-k (highest values) that are also in the predicted top-k (ties broken by index)."""
    _check_pair(pred, true)
    k = max(1, min(k, len(pred)))
    return len(set(_top(pred, k)) & set(_top(true, k))) / k


def top_k_regret(score: Sequence[float], truth: Sequence[float], k: int) -> float:
    """How much worse (in truth units) the best of the ``k`` best-scored is than the best of all; NaN if empty."""
    _check_pair(score, truth)
    if not score:
        return math.nan
    return max(truth) - max(truth[i] for i in _top(score, max(1, k)))


# ---------------------------------------------------------------------------------------------- t-tests
def mean_std(v: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof = 1; 0 for a single value, NaN for none)."""
    n = len(v)
    if n == 0:
        return math.nan, math.nan
    import numpy as np  # (scipy's tstd warns about cancellation for constant data; numpy's std does not)
    a = np.asarray(v, dtype=float)
    return float(a.mean()), (float(a.std(ddof=1)) if n > 1 else 0.0)


def t_two_sided_p(t: float, df: float) -> float:
    """Two-sided p-value of Student's t with ``df`` degrees of freedom (0 for an infinite t)."""
    if not math.isfinite(t):
        return 0.0 if math.isinf(t) else math.nan
    if df <= 0 or not math.isfinite(df):
        return math.nan
    return float(2.0 * _scipy_stats().t.sf(abs(t), df))


def _no_spread(mean: float, df: float) -> dict:
    """Both groups (or all differences) constant: the means differ infinitely many standard errors, or not at all."""
    if mean == 0:
        return {"t": math.nan, "df": df, "p": math.nan}
    return {"t": math.copysign(math.inf, mean), "df": df, "p": 0.0}


def welch_t_test(a: Sequence[float], b: Sequence[float]) -> dict:
    """Welch's unequal-variance t-test of mean(a) != mean(b): ``{t, df, p}`` (NaN where undefined).

    ``df`` is the Welch-Satterthwaite degrees of freedom (computed here: older scipy does not return it)."""
    na, nb = len(a), len(b)
    if na < 2 or nb < 2:
        return {"t": math.nan, "df": math.nan, "p": math.nan}
    (ma, sa), (mb, sb) = mean_std(a), mean_std(b)
    va, vb = sa * sa / na, sb * sb / nb
    if va + vb == 0:
        return _no_spread(ma - mb, math.nan)
    res = _scipy_stats().ttest_ind(a, b, equal_var=False)
    df = (va + vb) ** 2 / (va * va / (na - 1) + vb * vb / (nb - 1))
    return {"t": float(res[0]), "df": df, "p": float(res[1])}


def paired_t_test(a: Sequence[float], b: Sequence[float]) -> dict:
    """Paired t-test on the differences a_i - b_i (same seed): ``{t, df, p}`` (NaN where undefined)."""
    _check_pair(a, b)
    n = len(a)
    if n < 2:
        return {"t": math.nan, "df": math.nan, "p": math.nan}
    d = [x - y for x, y in zip(a, b)]
    if not _varies(d):
        return _no_spread(d[0], n - 1)
    res = _scipy_stats().ttest_rel(a, b)
    return {"t": float(res[0]), "df": n - 1, "p": float(res[1])}


# ------------------------------------------------------------------------------------------ collapse rule
COLLAPSE_MARGIN = 0.5


def parameter_free_share(op_freq: dict) -> float:
    """Share of the sampled ops that have no parameters (``PARAMETER_FREE``; non-finite entries count 0)."""
    return sum(v for k, v in op_freq.items() if k in PARAMETER_FREE and finite(v))


def collapse_threshold(ops: Iterable[str], margin: float = COLLAPSE_MARGIN) -> tuple[float, float] | None:
    """``(u, threshold)`` for a space whose candidate ops are ``ops``: ``u`` is the parameter-free ops' share under
    uniform sampling (their count over the op count) and the alarm threshold is ``u + margin (1 - u)``, ``margin``
    of the way from uniform to all: 80% in the ENAS micro and NAS-Bench-201 spaces (u = 3/5), 2/3 in the macro
    space (u = 1/3), 62.5% with 4 activations of which 1 (identity) is free. None when no op, or every op, is
    parameter-free (there is nothing to collapse onto, or nothing else)."""
    ops = list(ops)
    free = [k for k in ops if k in PARAMETER_FREE]
    if not free or len(free) == len(ops):
        return None
    u = len(free) / len(ops)
    return u, u + margin * (1 - u)


def is_collapsing(op_freq: dict, margin: float = COLLAPSE_MARGIN) -> bool:
    """The collapse rule: the parameter-free share of ``op_freq`` (every candidate op of the space, sampled or not,
    as in a search's ``op_freq``) reaches ``collapse_threshold``."""
    th = collapse_threshold(op_freq, margin) if op_freq else None
    return th is not None and parameter_free_share(op_freq) >= th[1]


def collapse_warning(op_freq: dict, margin: float = COLLAPSE_MARGIN) -> str:
    """A warning sentence when ``is_collapsing(op_freq)``, else ""."""
    if not is_collapsing(op_freq, margin):
        return ""
    u, thr = collapse_threshold(op_freq, margin)
    free = [k for k in op_freq if k in PARAMETER_FREE]
    return (f"parameter-free ops ({', '.join(free)}) are {parameter_free_share(op_freq):.0%} of the ops sampled "
            f"(uniform sampling gives {u:.0%}; alarm at {thr:.0%}): the controller may be collapsing onto "
            "parameter-free ops")


def policy_op_freq(row: dict) -> dict | None:
    """The op frequencies of a search's epoch row that the rule judges: the controller's own samples
    (``ctrl_op_freq``; they differ from ``op_freq`` when the shared phase samples uniformly), else ``op_freq``."""
    for key in ("ctrl_op_freq", "op_freq"):
        f = row.get(key)
        if isinstance(f, dict) and f:
            return f
    return None
