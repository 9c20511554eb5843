"""enas.stats: the statistics equal scipy's on random inputs with ties, degenerate inputs give NaN, and the one
collapse rule (used by the search log and the report) decides a few cases as documented."""

from __future__ import annotations

import math
import random
import warnings

import pytest
import scipy.stats as st

from enas import stats as S

TOL = 1e-12


def _samples(seed: int, n: int) -> tuple[list[float], list[float]]:
    """Two related sequences drawn from a few levels, so that both have ties."""
    rng = random.Random(seed)
    x = [float(rng.randint(0, 5)) for _ in range(n)]
    y = [a + rng.choice((-1.0, 0.0, 0.0, 1.0, 2.5)) for a in x]
    return x, y


@pytest.mark.parametrize("seed", range(8))
def test_rank_statistics_equal_scipy_with_ties(seed):
    x, y = _samples(seed, 7 + 5 * seed)
    assert len(set(x)) < len(x) and len(set(y)) < len(y)  # ties on both sides
    assert S.kendall_tau(x, y) == pytest.approx(st.kendalltau(x, y, variant="b")[0], abs=TOL)
    assert S.spearman_rho(x, y) == pytest.approx(st.spearmanr(x, y)[0], abs=TOL)
    assert S.pearson(x, y) == pytest.approx(st.pearsonr(x, y)[0], abs=TOL)
    assert S.ranks(x) == pytest.approx(list(st.rankdata(x)), abs=TOL)


def _brute_tau_b(x, y) -> float:
    n0 = tx = ty = s = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            dx, dy = x[i] - x[j], y[i] - y[j]
            n0 += 1
            tx += dx == 0
            ty += dy == 0
            s += (dx > 0) - (dx < 0) if dy > 0 else ((dx < 0) - (dx > 0) if dy < 0 else 0)
    return s / math.sqrt((n0 - tx) * (n0 - ty))


def test_kendall_tau_is_tau_b_by_pair_counting():
    x, y = _samples(11, 25)
    assert S.kendall_tau(x, y) == pytest.approx(_brute_tau_b(x, y), abs=TOL)


@pytest.mark.parametrize("seed", range(6))
def test_t_tests_equal_scipy(seed):
    rng = random.Random(100 + seed)
    a = [round(rng.gauss(0.7, 0.05), 2) for _ in range(3 + seed)]
    b = [round(rng.gauss(0.68, 0.08), 2) for _ in range(3 + seed)]
    w, ref = S.welch_t_test(a, b), st.ttest_ind(a, b, equal_var=False)
    assert w["t"] == pytest.approx(ref.statistic, abs=TOL) and w["p"] == pytest.approx(ref.pvalue, abs=TOL)
    assert w["df"] == pytest.approx(ref.df, rel=TOL)
    p, ref = S.paired_t_test(a, b), st.ttest_rel(a, b)
    assert p["t"] == pytest.approx(ref.statistic, abs=TOL) and p["p"] == pytest.approx(ref.pvalue, abs=TOL)
    assert p["df"] == len(a) - 1
    assert S.t_two_sided_p(w["t"], w["df"]) == pytest.approx(w["p"], abs=TOL) and 0 <= w["p"] <= 1
    m, s = S.mean_std(a)
    assert m == pytest.approx(st.tmean(a), abs=TOL) and s == pytest.approx(st.tstd(a), abs=TOL)


def test_unequal_group_sizes_equal_scipy():
    a, b = [0.61, 0.64, 0.64, 0.70], [0.55, 0.71, 0.60, 0.60, 0.58, 0.66, 0.69]
    w, ref = S.welch_t_test(a, b), st.ttest_ind(a, b, equal_var=False)
    assert (w["t"], w["df"], w["p"]) == pytest.approx((ref.statistic, ref.df, ref.pvalue), abs=TOL)


def test_top_k_overlap_and_regret():
    score, truth = [0.9, 0.8, 0.1, 0.5], [1.0, 0.0, 3.0, 2.0]
    assert S.top_k_overlap(score, truth, 2) == 0.0 and S.top_k_overlap(score, truth, 3) == pytest.approx(2 / 3)
    assert S.top_k_regret(score, truth, 1) == 2.0  # the best-scored has truth 1, the best truth is 3
    assert S.top_k_regret(score, truth, 4) == 0.0
    assert math.isnan(S.top_k_regret([], [], 3))


def test_degenerate_inputs_give_nan_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no scipy ConstantInputWarning or RuntimeWarning either
        for f in (S.kendall_tau, S.spearman_rho, S.pearson):
            assert math.isnan(f([1, 1, 1], [1, 2, 3])) and math.isnan(f([1, 2, 3], [2, 2, 2]))
            assert math.isnan(f([1], [2])) and math.isnan(f([], []))
        assert all(math.isnan(v) for v in S.welch_t_test([1.0], [2.0, 3.0]).values())
        assert all(math.isnan(v) for v in S.paired_t_test([1.0], [2.0]).values())
        same = S.welch_t_test([1.0, 1.0], [1.0, 1.0])
        assert math.isnan(same["t"]) and math.isnan(same["p"])
        apart = S.welch_t_test([2.0, 2.0], [1.0, 1.0])
        assert apart["t"] == math.inf and apart["p"] == 0.0
        shift = S.paired_t_test([1.0, 2.0, 3.0], [0.5, 1.5, 2.5])
        assert shift == {"t": math.inf, "df": 2, "p": 0.0}
        assert math.isnan(S.paired_t_test([1.0, 2.0], [1.0, 2.0])["p"])
        assert all(math.isnan(v) for v in S.mean_std([]))
        assert S.mean_std([3.0]) == (3.0, 0.0)
    with pytest.raises(ValueError, match="same length"):
        S.kendall_tau([1, 2], [1])


# ------------------------------------------------------------------------------------------- collapse rule
MICRO = ("sep_conv_3x3", "sep_conv_5x5", "avg_pool_3x3", "max_pool_3x3", "identity")
NB201 = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


def _freq(ops, free_share: float) -> dict:
    """Frequencies over ``ops`` with ``free_share`` spread evenly over the parameter-free ones."""
    free = [o for o in ops if o in S.PARAMETER_FREE]
    rest = [o for o in ops if o not in S.PARAMETER_FREE]
    return {o: (free_share / len(free) if o in free else (1 - free_share) / len(rest)) for o in ops}


def test_one_parameter_free_list_covers_every_space():
    from enas import ops, report
    from enas.spaces import nb201
    from enas.viz import graph
    assert {"none", "skip_connect", "avg_pool_3x3", "max_pool_3x3", "identity"} == set(S.PARAMETER_FREE)
    assert graph.PARAMETER_FREE is S.PARAMETER_FREE and report.PARAMETER_FREE is S.PARAMETER_FREE
    assert set(nb201.PARAMETER_FREE) == {"none", "skip_connect", "avg_pool_3x3"}
    assert set(ops.PARAMETER_FREE) == {"avg_pool_3x3", "max_pool_3x3", "identity"}


@pytest.mark.parametrize("space_ops, uniform, threshold", [
    (MICRO, 0.6, 0.8),  # ENAS micro: 3 of 5 ops free
    (NB201, 0.6, 0.8),  # NAS-Bench-201: none, skip_connect, avg_pool_3x3 of 5
    (("conv_3x3", "conv_5x5", "sep_conv_3x3", "sep_conv_5x5", "avg_pool_3x3", "max_pool_3x3"), 1 / 3, 2 / 3),
    (("tanh", "relu", "sigmoid", "identity"), 0.25, 0.625),  # the recurrent cell
])
def test_collapse_threshold_is_halfway_from_uniform_to_all(space_ops, uniform, threshold):
    u, thr = S.collapse_threshold(space_ops)
    assert u == pytest.approx(uniform) and thr == pytest.approx(threshold)
    assert not S.is_collapsing(_freq(space_ops, uniform)) and S.collapse_warning(_freq(space_ops, uniform)) == ""
    assert not S.is_collapsing(_freq(space_ops, threshold - 0.01))
    assert S.is_collapsing(_freq(space_ops, threshold + 0.01))
    msg = S.collapse_warning(_freq(space_ops, 1.0))
    assert "100%" in msg and f"alarm at {threshold:.0%}" in msg and "collapsing" in msg


def test_collapse_rule_edge_cases_and_the_report_agrees():
    from enas import report
    assert S.collapse_threshold(("sep_conv_3x3", "conv_1x1")) is None  # nothing to collapse onto
    assert S.collapse_threshold(("identity", "none")) is None  # nothing else
    assert not S.is_collapsing({}) and S.collapse_warning({}) == ""
    assert not S.is_collapsing({"avg_pool_3x3": math.nan, "sep_conv_3x3": 0.1, "identity": 0.3})
    # the report's note warns exactly when the rule does, on the controller's own frequencies when recorded
    early, late = _freq(NB201, 0.6), _freq(NB201, 0.85)
    assert report.op_collapse_note([{"op_freq": early}, {"op_freq": late}])[1]
    assert not report.op_collapse_note([{"op_freq": early}, {"op_freq": _freq(NB201, 0.78)}])[1]  # a rise, < 80%
    uniform_shared = [{"op_freq": early, "ctrl_op_freq": early}, {"op_freq": early, "ctrl_op_freq": late}]
    assert S.policy_op_freq(uniform_shared[1]) is late and report.op_collapse_note(uniform_shared)[1]
