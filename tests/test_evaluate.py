"""Honest evaluation: rank statistics, the significance test, BN recalibration, the collapse alarm, and the
``enas rank`` / ``enas compare`` verbs end to end on the tiny preset."""

from __future__ import annotations

import json
import math

import pytest
import torch

from enas import bn, build, config as C, evaluate as E


# ------------------------------------------------------------------------------------------ statistics
def test_kendall_tau_hand_computed_with_ties():
    # pairs of (x, y) = (1,1) (2,3) (2,2) (3,2): concordant (0,1) (0,2) (0,3); discordant (1,3);
    # tied in x only (1,2); tied in y only (2,3).  tau-b = (3 - 1) / sqrt((6 - 1) (6 - 1)) = 0.4
    assert E.kendall_tau([1, 2, 2, 3], [1, 3, 2, 2]) == pytest.approx(0.4)
    assert E.kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert E.kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # no ties, one swap among 4: (6 - 2 * 1) / 6
    assert E.kendall_tau([1, 2, 3, 4], [1, 2, 4, 3]) == pytest.approx(4 / 6)
    assert math.isnan(E.kendall_tau([1, 1, 1], [1, 2, 3]))


def test_spearman_rho_hand_computed_with_ties():
    # ranks x = 1, 2.5, 2.5, 4 ; ranks y = 1, 4, 2.5, 2.5 ; centred: (-1.5, 0, 0, 1.5), (-1.5, 1.5, 0, 0)
    # rho = 2.25 / sqrt(4.5 * 4.5) = 0.5
    assert E.ranks([1, 2, 2, 3]) == [1.0, 2.5, 2.5, 4.0]
    assert E.spearman_rho([1, 2, 2, 3], [1, 3, 2, 2]) == pytest.approx(0.5)
    # no ties: 1 - 6 sum d^2 / (n (n^2 - 1)) with d = (0, 0, 1, -1): 1 - 12 / 60 = 0.8
    assert E.spearman_rho([1, 2, 3, 4], [1, 2, 4, 3]) == pytest.approx(0.8)
    assert E.spearman_rho([3, 1, 2], [30, 10, 20]) == pytest.approx(1.0)


def test_top_k_overlap():
    pred, true = [0.9, 0.8, 0.1, 0.5], [1, 0, 3, 2]
    assert E.top_k_overlap(pred, true, 2) == 0.0  # {0, 1} vs {2, 3}
    assert E.top_k_overlap(pred, true, 3) == pytest.approx(2 / 3)  # {0, 1, 3} vs {2, 3, 0}
    assert E.top_k_overlap(pred, pred, 2) == 1.0
    assert E.top_k_overlap(pred, true, 10) == 1.0  # k capped at n


def test_welch_and_paired_t_tests_match_known_values():
    # scipy.stats.ttest_ind([1,2,3,4,5], [2,4,6,8,10], equal_var=False): t = -1.8973665961, df = 5.8823529, p = 0.1075312
    w = E.welch_t_test([1, 2, 3, 4, 5], [2, 4, 6, 8, 10])
    assert w["t"] == pytest.approx(-1.8973665961010275)
    assert w["df"] == pytest.approx(100 / 17)
    assert w["p"] == pytest.approx(0.10753119493062728, rel=1e-9)
    # the 97.5% quantile of Student's t with 10 degrees of freedom is 2.228138852: two-sided p = 0.05
    assert E.t_two_sided_p(2.228138851986, 10) == pytest.approx(0.05, abs=1e-9)
    assert E.t_two_sided_p(0.0, 7) == pytest.approx(1.0)
    # scipy.stats.ttest_rel([.5,.6,.7], [.4,.65,.5]): t = 1.1470786694, p = 0.3700592117
    p = E.paired_t_test([0.5, 0.6, 0.7], [0.4, 0.65, 0.5])
    assert p["t"] == pytest.approx(1.1470786693528081) and p["p"] == pytest.approx(0.3700592116512882, rel=1e-9)
    assert math.isnan(E.welch_t_test([1.0], [2.0, 3.0])["p"])
    m, s = E.mean_std([1, 2, 3, 4])
    assert m == 2.5 and s == pytest.approx(math.sqrt(5 / 3))


# -------------------------------------------------------------------------------------------- collapse
def test_collapse_warning():
    uniform = {"sep_conv_3x3": 0.2, "sep_conv_5x5": 0.2, "avg_pool_3x3": 0.2, "max_pool_3x3": 0.2, "identity": 0.2}
    assert E.collapse_warning(uniform) == ""
    collapsed = {"sep_conv_3x3": 0.05, "sep_conv_5x5": 0.05, "avg_pool_3x3": 0.1, "max_pool_3x3": 0.1,
                 "identity": 0.7}
    msg = E.collapse_warning(collapsed)
    assert "90%" in msg and "collapsing" in msg
    # a space with one parameter-free op of four: uniform 25%, alarm at 62.5%
    rnn = {"tanh": 0.1, "relu": 0.1, "sigmoid": 0.1, "identity": 0.7}
    assert E.collapse_warning(rnn) and not E.collapse_warning({**rnn, "identity": 0.5, "tanh": 0.3})
    assert E.collapse_warning({}) == ""


# ------------------------------------------------------------------------------------- BN recalibration
def _supernet(seed: int = 0):
    from enas.spaces import micro
    torch.manual_seed(seed)
    space = micro.MicroSpace(num_nodes=2)
    net = build.make_cnn("micro", space, C.NetConfig(channels=4, num_layers=1, aux_weight=0.0, keep_prob=1.0,
                                                      stem_multiplier=1), num_classes=10, in_channels=3)
    import random
    g = random.Random(seed)
    a, b = (micro.sample_uniform(space, g) for _ in range(2))
    return net, a, b


def test_recalibration_fixes_stale_statistics():
    net, arch_a, arch_b = _supernet()
    bn.keep_running_stats(net)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 3, 8, 8, generator=g)
    # stale statistics: collected for another architecture on shifted, rescaled data
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(x * 4.0 + 3.0, arch_a)
    net.eval()
    with torch.no_grad():
        stale = net(x, arch_b)[0]
        with bn.batch_stats(net):  # what the reference does: this batch's statistics
            fresh = net(x, arch_b)[0]
    assert not torch.allclose(stale, fresh, atol=1e-2)
    means_before = [m.running_mean.clone() for m in bn.bn_layers(net)]
    bn.recalibrate(net, lambda inp: net(inp, arch_b), [x])
    assert not net.training
    with torch.no_grad():
        recal = net(x, arch_b)[0]
    # statistics re-estimated on x for arch_b: eval-mode output ~ batch-statistics output (unbiased vs biased var)
    assert torch.allclose(recal, fresh, rtol=0.05, atol=0.05)
    assert (recal - fresh).abs().max() < (stale - fresh).abs().max() / 10
    assert any(not torch.equal(b, m.running_mean) for b, m in zip(means_before, bn.bn_layers(net)))
    # batch_stats() restores the running statistics untouched
    assert all(m.running_mean is not None and m.track_running_stats for m in bn.bn_layers(net))


def test_recalibration_changes_search_scores(tmp_path):
    from enas import search as S
    cfg = C.load_config("tiny", overrides=["search.bn_recalibrate=2"])
    run = S.setup(cfg, tmp_path, stop=lambda: False)
    try:
        assert bn.uses_running_stats(run.model)
        archs = S.decode(run, run.uniform(4, generator=build.make_generator(0)).actions)
        batches = run.task.fixed_valid_batches(2)
        calib = S.calibration_batches(run, 2)

        def make_stale():
            run.model.train()
            with torch.no_grad():
                x, _ = batches[0]
                for _ in range(3):
                    run.model(x * 5.0 + 2.0, archs[0])
            run.model.eval()

        make_stale()
        with torch.no_grad():
            stale_logits = run.model(batches[0][0], archs[1])[0]
            recal = [S._score(run, a, batches, calib).item() for a in archs]
            recal_logits = run.model(batches[0][0], archs[-1])[0]
        make_stale()
        with torch.no_grad():
            again = [S._score(run, a, batches, calib).item() for a in archs]
            S.recalibrate_for(run, archs[1], calib)
            fixed_logits = run.model(batches[0][0], archs[1])[0]
        assert recal == again  # recalibrated scores do not depend on the stale state
        assert not torch.allclose(stale_logits, fixed_logits, atol=1e-3)
        assert recal_logits.shape == fixed_logits.shape
    finally:
        run.metrics.close()


def test_config_checks_new_fields():
    with pytest.raises(C.ConfigError, match="bn_recalibrate"):
        C.load_config("tiny", overrides=["search.bn_recalibrate=-1"])
    with pytest.raises(C.ConfigError, match="reward_bn_recalibrate"):
        C.load_config("tiny", overrides=["controller.reward_bn_recalibrate=true"])
    cfg = C.load_config("tiny", overrides=["search.bn_recalibrate=3", "controller.reward_bn_recalibrate=true"])
    assert cfg.search.bn_recalibrate == 3 and cfg.controller.reward_bn_recalibrate
    assert C.Config().search.bn_recalibrate == 0  # default: the reference's batch statistics


# ------------------------------------------------------------------------------------------ end to end
def test_rank_end_to_end(tmp_path):
    from enas.cli import main
    from enas.search import search
    cfg = C.load_config("tiny", overrides=["shared.epochs=1", "search.retrain=false", "search.bn_recalibrate=2",
                                           "controller.reward_bn_recalibrate=true"])
    search(cfg, out=tmp_path / "s")
    rc = main(["rank", str(tmp_path / "s"), "--archs", "3", "--epochs", "1", "--batches", "1", "--top-k", "2",
               "train.batch_size=256"])
    assert rc == 0
    r = json.loads((tmp_path / "s" / "rank.json").read_text())
    assert len(r["table"]) == 3 and r["primary"] == "recalibrated" and r["bn_recalibrate"] == 2
    for row in r["table"]:
        assert 0 <= row["supernet_score_recalibrated"] <= 1 and 0 <= row["standalone"] <= 1
    for key in ("kendall_tau", "spearman_rho", "top_k_overlap"):
        assert key in r
    assert "Ranking fidelity" in (tmp_path / "s" / "report.html").read_text()


def test_compare_end_to_end(tmp_path):
    from enas.cli import main
    out = tmp_path / "cmp"
    rc = main(["compare", "--seeds", "0,1", "--preset", "tiny", "--out", str(out), "shared.epochs=1",
               "controller.train_steps=1", "search.derive_samples=2"])
    assert rc == 0
    c = json.loads((out / "compare.json").read_text())
    assert {r["method"] for r in c["runs"]} == {"enas", "random"} and len(c["runs"]) == 4
    assert c["stats"]["enas"]["n"] == 2 and c["stats"]["random"]["n"] == 2
    assert "welch" in c and "paired" in c
    saved = json.loads((out / "random-seed1" / "config.json").read_text())
    assert saved["controller"]["kind"] == "random" and saved["run"]["seed"] == 1
    assert "ENAS vs random" in (out / "report.html").read_text()
    assert all((out / f"{m}-seed{s}" / "report.html").exists() for m in ("enas", "random") for s in (0, 1))
    # a second call reuses the finished runs
    assert main(["compare", "--seeds", "0,1", "--preset", "tiny", "--out", str(out), "shared.epochs=1",
                 "controller.train_steps=1", "search.derive_samples=2"]) == 0
