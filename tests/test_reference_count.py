"""The final micro network against the reference's own shapes (#14 item 3).

``_reference_count`` tallies the trainable variables that melodyguan/enas ``micro_child.py`` creates in fixed-arc
mode (``_maybe_calibrate_size``, the "layer_base" 1x1, ``_fixed_conv`` stacked twice, pooling, identity with
factorized reduction at stride 2, ``_fixed_combine`` of the loose ends, the aux head at ``pool_layers[-1] + 1``,
BN offset and scale), written from reading that code's shapes and nothing of ours. Our network must count the
same for the published cell and for random cells. Measured this way the reference itself builds 3,894,372
parameters for the published cell at 36 channels (what its ``count_model_params`` prints: it leaves the aux head
out), 4,389,220 with the aux head: the paper's 4.6M is not what the reference code builds.
"""

from __future__ import annotations

import random

import pytest

from enas import build
from enas.config import load_config
from enas.spaces import micro
from enas.train import count_params


def _reference_count(ints: list[int], channels: int, num_layers: int, nodes: int = 5, size: int = 32,
                     classes: int = 10) -> tuple[int, int]:
    """(parameters without the aux head, aux head parameters) of the reference's fixed micro network."""
    def bn(c):
        return 2 * c

    def fr(ci, co):  # factorized reduction: two 1x1 convs to co/2 each, then BN
        return 2 * ci * (co // 2) + bn(co)

    normal, reduction = ints[:4 * nodes], ints[4 * nodes:]
    pools = [num_layers // 3, 2 * (num_layers // 3) + 1]
    total = 3 * 3 * 3 * 3 * channels + bn(3 * channels)  # stem
    prev = [(3 * channels, size), (3 * channels, size)]
    c, aux = channels, 0
    for layer in range(num_layers + 2):
        stride, arc = (2, reduction) if layer in pools else (1, normal)
        c *= stride
        (c0, h0), (c1, h1) = prev
        if h0 != h1:
            total += fr(c0, c)
        elif c0 != c:
            total += c0 * c + bn(c)
        if c1 != c:
            total += c1 * c + bn(c)
        total += c * c + bn(c)  # layer_base
        hw = {0: h1, 1: h1}
        used = [0] * (nodes + 2)
        for n in range(nodes):
            for slot in range(2):
                i, op = arc[4 * n + 2 * slot], arc[4 * n + 2 * slot + 1]
                used[i] += 1
                if op in (0, 1):  # sep conv 3x3 / 5x5, stacked twice: depthwise k*k*c, pointwise c*c, BN
                    k = (3, 5)[op]
                    total += 2 * (k * k * c + c * c + bn(c))
                elif op == 4 and stride == 2 and i in (0, 1):
                    total += fr(c, c)
            hw[n + 2] = h1 // stride
        loose = [i for i in range(nodes + 2) if used[i] == 0]
        out_hw = min(hw[i] for i in loose)
        total += sum(fr(c, c) for i in loose if hw[i] > out_hw)
        prev = [prev[1], (len(loose) * c, out_hw)]
        if layer == pools[-1] + 1:  # aux head: 1x1 to 128 + BN, conv over the pooled map to 768 + BN, FC (no bias)
            pooled = (out_hw - 5) // 3 + 1
            aux = prev[1][0] * 128 + bn(128) + pooled * pooled * 128 * 768 + bn(768) + 768 * classes
    total += prev[1][0] * classes  # classifier, no bias
    return total, aux


def _ours(ints: list[int], cfg) -> tuple[int, int]:
    space = build.make_space(cfg)
    arch = micro.from_enas_string(" ".join(map(str, ints)), space)
    net = build.make_cnn("micro", space, cfg.final_net, num_classes=10, in_channels=3, arch=arch)
    return count_params(net), sum(p.numel() for p in net.aux_head.parameters())


def test_reference_tally_of_the_published_cell():
    ints = [int(t) for t in micro.PAPER_ARCH_STRING.split()]
    assert _reference_count(ints, 36, 15) == (3_894_372, 494_848)


@pytest.mark.parametrize("seed", [None, 0, 1, 2, 3])
def test_micro_final_counts_what_the_reference_builds(seed):
    cfg = load_config("micro-final")
    assert list(build.make_space(cfg).ops) == ["sep_conv_3x3", "sep_conv_5x5", "avg_pool_3x3", "max_pool_3x3", "identity"]
    if seed is None:
        ints = [int(t) for t in micro.PAPER_ARCH_STRING.split()]
    else:
        space = build.make_space(cfg)
        arch = micro.sample_uniform(space, random.Random(seed))
        ints = [int(t) for t in micro.to_enas_string(arch, space).split()]
    body, aux = _ours(ints, cfg)
    ref_body, ref_aux = _reference_count(ints, cfg.final_net.channels, cfg.final_net.num_layers)
    assert body == ref_body
    assert aux == ref_aux + 10  # our aux classifier has a bias; the reference's has none
