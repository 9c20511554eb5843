"""Run configuration: frozen dataclasses of primitives, named presets, files and ``key=value`` overrides.

Pure Python (no torch). ``load_config(preset, file, overrides)`` builds a :class:`Config`; every unknown
key and every value that does not fit its field is reported at once in a :class:`ConfigError`.
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from .errors import EnasError
from .spaces import SPACES


class ConfigError(EnasError, ValueError):
    def __init__(self, errors: list[str] | str):
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        super().__init__("; ".join(self.errors))


@dataclass(frozen=True)
class DataConfig:
    source: str = "digits"  # a name (digits, cifar10, pydoc) or a path
    valid: float = 0.1  # held-out part of the training set for the controller (fraction < 1, or a count)
    image_size: int = 0  # resize image folders to this size (0 = keep)
    limit_per_class: int = 0  # read at most this many images per class (0 = all), for quick runs
    pad: int = -1  # random-crop padding (-1 = image_size // 8)
    flip: bool = True
    vocab_size: int = 10000  # text: vocabulary cap
    bptt: int = 35  # text: truncated back-propagation length


@dataclass(frozen=True)
class SpaceConfig:
    num_nodes: int = 5  # micro: nodes per cell; rnn: nodes per cell
    num_layers: int = 12  # macro: layers of the searched network
    ops: tuple[str, ...] = ()  # op (or activation) names; empty = the space's defaults


@dataclass(frozen=True)
class NetConfig:
    """Shape of a network (the search supernet, or the final fixed model)."""

    channels: int = 20
    num_layers: int = 6  # micro: normal cells (two reduction cells are added); macro: ignored (space)
    keep_prob: float = 0.9  # dropout keep probability before the classifier
    aux_weight: float = 0.4  # 0 disables the auxiliary head
    drop_path: float = 0.0  # final drop-path probability (ramped over training, scaled by depth)
    stem_multiplier: int = 3
    double_channels: bool = True  # macro: double channels at each reduction
    # micro: identity path around every cell (normal: + pre1(s1); reduction: + a factorized reduction of s1)
    cell_residual: bool = False
    # micro: cell output, combine (ReLU-1x1-BN of the loose ends to C channels) | concat (the reference's final
    # network: loose ends concatenated, the next cell calibrates them with 1x1 convs)
    cell_output: str = "combine"
    # language model
    embed_size: int = 200
    hidden_size: int = 200
    dropout_e: float = 0.1
    dropout_i: float = 0.2
    dropout_x: float = 0.75
    dropout_l: float = 0.25
    dropout_o: float = 0.75
    init_range: float = 0.04
    # recurrent cell (issue #17): h_t = mean of the loose ends (loose_ends: paper) or of nodes 1..N-1 (all:
    # enas_lm); clamp of h_t at every step (0 = off); node 0 always tanh (enas_lm) whatever the architecture says
    rnn_output: str = "loose_ends"
    rnn_state_clip: float = 0.0
    rnn_first_tanh: bool = False


@dataclass(frozen=True)
class OptimConfig:
    """SGD for shared weights (search) or the fixed model (final training)."""

    epochs: int = 150
    batch_size: int = 160
    eval_batch_size: int = 500
    lr_max: float = 0.05
    lr_min: float = 0.0005
    lr_schedule: str = "cosine"  # cosine (with restarts) | exp (language models) | constant
    lr_t0: int = 10
    lr_tmul: int = 2
    lr_decay: float = 0.96  # exp: factor per epoch
    lr_decay_start: int = 15  # exp: first epoch that decays
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    grad_clip: float = 5.0  # global norm; 0 = off
    cutout: int = 0
    ar_alpha: float = 0.0  # language model: activation regularisation
    tar_beta: float = 0.0  # language model: temporal activation regularisation
    asgd: bool = False  # language model: switch to averaged SGD when validation stalls


@dataclass(frozen=True)
class ControllerConfig:
    kind: str = "enas"  # enas | random
    lstm_size: int = 64
    lr: float = 0.0035
    beta1: float = 0.0
    eps: float = 1e-3
    temperature: float = 0.0  # 0 = none
    tanh_constant: float = 1.10  # 0 = none
    op_tanh_reduce: float = 2.5
    entropy_weight: float = 1e-4
    baseline_decay: float = 0.99
    train_steps: int = 30  # Adam updates per epoch
    num_aggregate: int = 10  # sampled architectures per update
    skip_target: float = 0.4
    skip_weight: float = 0.0
    reward_c: float = 80.0  # language model: reward = c / valid_ppl
    warmup_epochs: int = 0  # epochs of uniform sampling before the controller is used and trained
    reward_bn_recalibrate: bool = False  # recalibrate BN statistics for each rewarded arch (needs search.bn_recalibrate > 0)
    op_bias: bool = True  # the space's op preferences (micro: the reference's +10 initial / +-0.25 fixed conv bias)
    reward: str = "shared"  # shared: the sampled child's quality with the shared weights | table: a benchmark's accuracy
    reward_noise: float = 0.0  # table: standard deviation of Gaussian noise added to each reward (accuracy in [0, 1])
    reward_batch_size: int = 0  # validation images per reward (image spaces; 0 = shared.batch_size, the reference's)


@dataclass(frozen=True)
class SearchConfig:
    derive_samples: int = 100  # architectures sampled by the final derive
    epoch_derive_samples: int = 10  # architectures sampled by the per-epoch derive (best_arch.json)
    derive_batches: int = 1  # validation batches each architecture is scored on
    checkpoint_every: int = 100  # shared steps between checkpoints (0 = epoch ends only)
    retrain: bool = True  # train the derived architecture from scratch at the end (enas search)
    bn_recalibrate: int = 0  # training batches to re-estimate BN statistics per scored arch (0 = batch statistics)
    table_budget: int = 500  # controller.reward=table: sampled cells in all (the search's only cost)
    shared_sampling: str = "controller"  # who samples the shared phase's architectures: controller (paper) | uniform
    uniform_reference: bool = True  # also reward uniform architectures on the controller's batches (report, SNR)
    benchmark: str = ""  # path of the space's ground-truth table (nb201: the csv or its folder; "" = $ENAS_NB201 or ../shared/data)
    benchmark_dataset: str = "cifar10"  # which of the table's datasets rewards (table mode) and ranks


@dataclass(frozen=True)
class RunConfig:
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    bf16: str = "auto"  # auto (on for CUDA) | on | off
    channels_last: str = "auto"
    compile: str = "off"  # on | off: torch.compile for final training of a fixed model
    log_every: int = 20
    max_nonfinite: int = 10  # stop after this many consecutive non-finite steps
    progress: bool = True
    report: bool = True


@dataclass(frozen=True)
class Config:
    space: str = "micro"
    data: DataConfig = field(default_factory=DataConfig)
    space_cfg: SpaceConfig = field(default_factory=SpaceConfig)
    net: NetConfig = field(default_factory=NetConfig)  # the search supernet
    shared: OptimConfig = field(default_factory=OptimConfig)  # shared-weight training during search
    controller: ControllerConfig = field(default_factory=ControllerConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    final_net: NetConfig = field(default_factory=NetConfig)  # the model trained from scratch
    train: OptimConfig = field(default_factory=OptimConfig)  # final training
    run: RunConfig = field(default_factory=RunConfig)


SECTIONS = {f.name: f.type for f in fields(Config) if f.name != "space"}
TABLE_SPACES = ("nb201",)  # spaces whose every architecture has a ground-truth accuracy (enas.benchmarks)

# ----------------------------------------------------------------------------------------------- presets
# Each preset is a nested dict of overrides on the defaults above. Values follow the reference scripts
# (melodyguan/enas scripts/*.sh) unless noted; docs/presets.md lists where the paper differs.

_MICRO_SEARCH_CTRL = {"lr": 0.0035, "tanh_constant": 1.10, "op_tanh_reduce": 2.5, "entropy_weight": 1e-4,
                      "train_steps": 30, "num_aggregate": 10, "skip_weight": 0.0}
_MACRO_SEARCH_CTRL = {"lr": 0.001, "tanh_constant": 1.5, "op_tanh_reduce": 1.0, "entropy_weight": 1e-4,
                      "train_steps": 50, "num_aggregate": 20, "skip_target": 0.4, "skip_weight": 0.8}

# The search settings that depart from the reference (each a named option; docs/design.md has the measurements):
# an identity path around every cell (net.cell_residual), rewards on 128 validation images instead of one
# training-size batch (controller.reward_batch_size), and a controller that can move: Adam eps 1e-8 (the
# reference's 1e-3 makes each step ~0.7 % of lr), logits 2.5*tanh without the 2.5 reduction (the reference caps
# P(op) at 0.38 with 5 ops), and no built-in preference for convolutions (controller.op_bias).
_SEARCH_NET = {"cell_residual": True}
_SEARCH_CTRL = {"lr": 0.005, "eps": 1e-8, "tanh_constant": 2.5, "op_tanh_reduce": 1.0, "op_bias": False,
                "reward_batch_size": 128}

PRESETS: dict[str, dict] = {
    # The demo that `enas search` runs with no arguments: digits (8x8), a few minutes on 2 CPU cores.
    "default": {
        "space": "micro",
        "data": {"source": "digits", "valid": 0.15, "pad": 1, "flip": False},
        "space_cfg": {"num_nodes": 4},
        "net": {"channels": 8, "num_layers": 2, "aux_weight": 0.0, "keep_prob": 1.0, "stem_multiplier": 2,
                **_SEARCH_NET},
        "shared": {"epochs": 25, "batch_size": 32, "eval_batch_size": 256, "lr_max": 0.1, "lr_min": 0.001,
                   "lr_t0": 25, "weight_decay": 1e-4},
        "controller": {**_MICRO_SEARCH_CTRL, "train_steps": 10, "num_aggregate": 5, **_SEARCH_CTRL},
        "search": {"derive_samples": 30, "epoch_derive_samples": 5, "checkpoint_every": 0},
        "final_net": {"channels": 12, "num_layers": 3, "aux_weight": 0.0, "keep_prob": 0.9, "drop_path": 0.0,
                      "stem_multiplier": 2},
        "train": {"epochs": 10, "batch_size": 32, "eval_batch_size": 256, "lr_max": 0.05, "lr_min": 0.001,
                  "lr_t0": 10, "weight_decay": 2e-4},
    },
    # Smallest settings that exercise every code path; for tests.
    "tiny": {
        "space": "micro",
        "data": {"source": "digits", "valid": 0.2, "pad": 1},
        "space_cfg": {"num_nodes": 2, "num_layers": 3},
        "net": {"channels": 4, "num_layers": 1, "aux_weight": 0.4, "keep_prob": 1.0, "stem_multiplier": 1,
                "embed_size": 16, "hidden_size": 16},
        "shared": {"epochs": 2, "batch_size": 128, "eval_batch_size": 256, "lr_t0": 2,
                   "lr_max": 0.05, "lr_min": 0.001},
        "controller": {"train_steps": 2, "num_aggregate": 2},
        "search": {"derive_samples": 4, "epoch_derive_samples": 2, "checkpoint_every": 3},
        "final_net": {"channels": 4, "num_layers": 1, "aux_weight": 0.4, "keep_prob": 0.9, "drop_path": 0.2,
                      "stem_multiplier": 1, "embed_size": 16, "hidden_size": 16},
        "train": {"epochs": 1, "batch_size": 128, "eval_batch_size": 256, "lr_t0": 1, "cutout": 2},
        "run": {"progress": False},
    },
    "micro-search": {
        "space": "micro",
        "data": {"source": "cifar10", "valid": 5000},
        "space_cfg": {"num_nodes": 5},
        "net": {"channels": 20, "num_layers": 6, "keep_prob": 0.9, "aux_weight": 0.4},
        "shared": {"epochs": 150, "batch_size": 160, "lr_max": 0.05, "lr_min": 0.0005, "weight_decay": 1e-4,
                   "grad_clip": 5.0},
        "controller": _MICRO_SEARCH_CTRL,
        "final_net": {"channels": 36, "num_layers": 15, "keep_prob": 0.8, "aux_weight": 0.4, "drop_path": 0.4,
                      "cell_output": "concat"},
        "train": {"epochs": 630, "batch_size": 144, "lr_max": 0.05, "lr_min": 0.0001, "weight_decay": 2e-4,
                  "cutout": 16},
    },
    "micro-final": {
        "space": "micro",
        "data": {"source": "cifar10", "valid": 0},
        "space_cfg": {"num_nodes": 5},
        "final_net": {"channels": 36, "num_layers": 15, "keep_prob": 0.8, "aux_weight": 0.4, "drop_path": 0.4,
                      "cell_output": "concat"},
        "train": {"epochs": 630, "batch_size": 144, "lr_max": 0.05, "lr_min": 0.0001, "weight_decay": 2e-4,
                  "cutout": 16, "grad_clip": 5.0},
    },
    "macro-search": {
        "space": "macro",
        "data": {"source": "cifar10", "valid": 5000},
        "space_cfg": {"num_layers": 12},
        "net": {"channels": 36, "keep_prob": 0.9, "aux_weight": 0.0, "double_channels": False},
        "shared": {"epochs": 310, "batch_size": 128, "lr_max": 0.05, "lr_min": 0.0005, "weight_decay": 2.5e-4},
        "controller": _MACRO_SEARCH_CTRL,
        "final_net": {"channels": 96, "keep_prob": 0.5, "aux_weight": 0.0, "double_channels": True},
        "train": {"epochs": 310, "batch_size": 100, "lr_max": 0.05, "lr_min": 0.001, "weight_decay": 2e-4,
                  "cutout": 16},
    },
    "macro-final": {
        "space": "macro",
        "data": {"source": "cifar10", "valid": 0},
        "space_cfg": {"num_layers": 24},
        "final_net": {"channels": 96, "keep_prob": 0.5, "aux_weight": 0.0, "double_channels": True},
        "train": {"epochs": 310, "batch_size": 100, "lr_max": 0.05, "lr_min": 0.001, "weight_decay": 2e-4,
                  "cutout": 16},
    },
    # --- language models (recurrent space); values from the paper (Sec. 3.1) and the corrected enas_lm code
    "ptb-search": {
        "space": "rnn",
        "data": {"source": "ptb", "vocab_size": 10000, "bptt": 35},
        "space_cfg": {"num_nodes": 12},
        "net": {"embed_size": 200, "hidden_size": 200, "dropout_e": 0.1, "dropout_i": 0.2, "dropout_x": 0.75,
                "dropout_l": 0.25, "dropout_o": 0.75, "init_range": 0.04},
        "shared": {"epochs": 150, "batch_size": 128, "lr_max": 20.0, "lr_min": 0.001, "lr_schedule": "exp",
                   "lr_decay": 0.96, "lr_decay_start": 15, "momentum": 0.0, "nesterov": False,
                   "weight_decay": 1.6e-6, "grad_clip": 0.25, "tar_beta": 1.0},
        "controller": {"lr": 3.5e-4, "temperature": 5.0, "tanh_constant": 2.5, "op_tanh_reduce": 1.0,
                       "entropy_weight": 1e-4, "baseline_decay": 0.99, "train_steps": 25, "num_aggregate": 10,
                       "reward_c": 80.0},
        "search": {"derive_samples": 100, "epoch_derive_samples": 10, "checkpoint_every": 200},
        "final_net": {"embed_size": 788, "hidden_size": 788, "dropout_e": 0.125, "dropout_i": 0.175,
                      "dropout_x": 0.725, "dropout_l": 0.225, "dropout_o": 0.75, "init_range": 0.05},
        "train": {"epochs": 3000, "batch_size": 64, "eval_batch_size": 10, "lr_max": 20.0, "lr_schedule": "constant",
                  "momentum": 0.0, "nesterov": False, "weight_decay": 1.6e-6, "grad_clip": 0.25, "ar_alpha": 0.7,
                  "asgd": True},
    },
}
# The default demo at the reference's settings (the paper's search cell and controller): `--preset default-paper`.
PRESETS["default-paper"] = {
    **PRESETS["default"],
    "net": {k: v for k, v in PRESETS["default"]["net"].items() if k not in _SEARCH_NET},
    "controller": {**_MICRO_SEARCH_CTRL, "train_steps": 10, "num_aggregate": 5},
}
PRESETS["ptb-final"] = {k: v for k, v in PRESETS["ptb-search"].items() if k not in ("shared", "controller", "search")}
# The recurrent demo. `rnn-paper` is the paper's search cell and controller at this size (what `rnn-default` was
# before issue #17); `rnn-default` departs from it where measured (docs/benchmarks.md section 4): h_t clamped to
# [-1, 1] at every step (net.rnn_state_clip: without it, a PTB search at batch 64 / BPTT 35 had a step at loss
# 2e13, 2.6e12 times the running median) and a controller that can move (Adam eps 1e-8: the reference's 1e-3 is
# far above the gradients; lr 0.005, 20 updates per epoch, no temperature: with the paper's 5 the policy's
# reward fell below the uniform cells' on a PTB subset).
PRESETS["rnn-paper"] = {
    "space": "rnn",
    "data": {"source": "pydoc", "vocab_size": 10000, "bptt": 20},
    "space_cfg": {"num_nodes": 8},
    "net": {"embed_size": 64, "hidden_size": 64, "dropout_e": 0.05, "dropout_i": 0.1, "dropout_x": 0.3,
            "dropout_l": 0.1, "dropout_o": 0.3, "init_range": 0.1},
    "shared": {"epochs": 4, "batch_size": 32, "lr_max": 10.0, "lr_min": 0.1, "lr_schedule": "constant",
               "momentum": 0.0, "nesterov": False, "weight_decay": 1e-6, "grad_clip": 0.25},
    "controller": {**PRESETS["ptb-search"]["controller"], "train_steps": 10, "num_aggregate": 5},
    "search": {"derive_samples": 30, "epoch_derive_samples": 5, "checkpoint_every": 0},
    "final_net": {"embed_size": 64, "hidden_size": 64, "dropout_e": 0.05, "dropout_i": 0.1, "dropout_x": 0.3,
                  "dropout_l": 0.1, "dropout_o": 0.3, "init_range": 0.1},
    "train": {"epochs": 4, "batch_size": 32, "eval_batch_size": 10, "lr_max": 10.0, "lr_schedule": "constant",
              "momentum": 0.0, "nesterov": False, "weight_decay": 1e-6, "grad_clip": 0.25},
}
PRESETS["rnn-default"] = {
    **PRESETS["rnn-paper"],
    "net": {**PRESETS["rnn-paper"]["net"], "rnn_state_clip": 1.0},
    "controller": {**PRESETS["rnn-paper"]["controller"], "lr": 0.005, "eps": 1e-8, "temperature": 0.0,
                   "train_steps": 20},
    "final_net": {**PRESETS["rnn-paper"]["final_net"], "rnn_state_clip": 1.0},
}
PRESETS["rnn-tiny"] = {
    "space": "rnn",
    "data": {"source": "pydoc", "vocab_size": 1000, "bptt": 35},
    "space_cfg": {"num_nodes": 3},
    "net": {"embed_size": 16, "hidden_size": 16, "dropout_e": 0.0, "dropout_i": 0.1, "dropout_x": 0.1,
            "dropout_l": 0.1, "dropout_o": 0.1},
    "shared": {"epochs": 1, "batch_size": 64, "lr_max": 5.0, "lr_schedule": "constant", "momentum": 0.0,
               "nesterov": False, "weight_decay": 0.0, "grad_clip": 0.25},
    "controller": {"temperature": 5.0, "tanh_constant": 2.5, "op_tanh_reduce": 1.0, "train_steps": 2,
                   "num_aggregate": 2},
    "search": {"derive_samples": 4, "epoch_derive_samples": 2, "checkpoint_every": 10},
    "final_net": {"embed_size": 16, "hidden_size": 16, "dropout_e": 0.0, "dropout_i": 0.1, "dropout_x": 0.1,
                  "dropout_l": 0.1, "dropout_o": 0.1},
    "train": {"epochs": 1, "batch_size": 64, "eval_batch_size": 10, "lr_max": 5.0, "lr_schedule": "constant",
              "momentum": 0.0, "nesterov": False, "weight_decay": 0.0, "grad_clip": 0.25},
    "run": {"progress": False},
}
PRESETS["macro-default"] = {
    "space": "macro",
    "data": {"source": "digits", "valid": 0.15, "pad": 1, "flip": False},
    "space_cfg": {"num_layers": 6},
    "net": {"channels": 12, "keep_prob": 1.0, "aux_weight": 0.0, "double_channels": False},
    "shared": {"epochs": 10, "batch_size": 32, "eval_batch_size": 256, "lr_max": 0.05, "lr_min": 0.001,
               "lr_t0": 10, "weight_decay": 1e-4},
    "controller": {**_MACRO_SEARCH_CTRL, "train_steps": 10, "num_aggregate": 5},
    "search": {"derive_samples": 30, "epoch_derive_samples": 5, "checkpoint_every": 0},
    "final_net": {"channels": 16, "keep_prob": 0.9, "aux_weight": 0.0, "double_channels": True},
    "train": {"epochs": 15, "batch_size": 32, "eval_batch_size": 256, "lr_max": 0.05, "lr_min": 0.001,
              "lr_t0": 15, "weight_decay": 2e-4},
}
PRESETS["macro-tiny"] = {
    **PRESETS["tiny"], "space": "macro", "space_cfg": {"num_layers": 3},
    "net": {"channels": 4, "keep_prob": 1.0, "aux_weight": 0.0, "double_channels": False},
    "controller": {**_MACRO_SEARCH_CTRL, "train_steps": 2, "num_aggregate": 2},
    "final_net": {"channels": 4, "keep_prob": 0.9, "aux_weight": 0.0, "double_channels": True},
}

# --- NAS-Bench-201 (Dong & Yang, ICLR 2020): the benchmark's skeleton and cell; every cell has ground truth
# (enas.benchmarks.nb201), so these searches end with the derived cell's 200-epoch test accuracy, no retraining.
# Controller: the micro search's, but Adam with eps 1e-8 (the reference's 1e-3 is far above the gradients, so
# each step was ~0.7 % of lr) and lr 0.01: in the table-reward study (bench/nb201_controller.py, 10 seeds) the
# reference settings do not move the policy (94.07 %, random 94.15 %), these reach 94.30 % and beat random in 8.
_NB201_CTRL = {"lr": 0.01, "eps": 1e-8, "tanh_constant": 1.10, "op_tanh_reduce": 1.0, "entropy_weight": 1e-4,
               "train_steps": 30, "num_aggregate": 10}
# the benchmark's own training of a cell (C=16, N=5, 200 epochs): what `enas train` / `enas show` build
_NB201_FINAL = {"final_net": {"channels": 16, "num_layers": 5, "keep_prob": 1.0, "aux_weight": 0.0},
                "train": {"epochs": 200, "batch_size": 256, "lr_max": 0.1, "lr_min": 0.0, "lr_t0": 200,
                          "weight_decay": 5e-4, "nesterov": True, "grad_clip": 5.0}}
PRESETS["nb201-search"] = {
    **_NB201_FINAL,
    "space": "nb201",
    "data": {"source": "cifar10", "valid": 25000},
    "space_cfg": {"num_nodes": 4},
    "net": {"channels": 16, "num_layers": 5, "keep_prob": 1.0, "aux_weight": 0.0},
    "shared": {"epochs": 100, "batch_size": 64, "eval_batch_size": 500, "lr_max": 0.025, "lr_min": 0.001,
               "lr_t0": 100, "weight_decay": 3e-4, "grad_clip": 5.0},
    "controller": _NB201_CTRL,
    "search": {"derive_samples": 100, "epoch_derive_samples": 10, "derive_batches": 4, "retrain": False},
}
# CPU-sized weight-sharing search on a CIFAR-10 subset at 16x16 (pass --data to the cifar10-jpg copy), about 4
# minutes on 2 cores. On 10,000 images a supernet trained 20 epochs at lr 0.05 ranked cells *against* the table
# (Kendall tau -0.26: parameter-free cells train faster) and 60 epochs at lr 0.1 gave +0.17 / +0.30 (BN
# recalibrated); this preset's 5,000 images x 40 epochs is below that budget (tau ~0, docs/benchmarks.md 8.2).
PRESETS["nb201-cpu"] = {
    **_NB201_FINAL,
    "space": "nb201",
    "data": {"source": "cifar10", "valid": 0.2, "image_size": 16, "limit_per_class": 500, "pad": 2},
    "space_cfg": {"num_nodes": 4},
    "net": {"channels": 16, "num_layers": 1, "keep_prob": 1.0, "aux_weight": 0.0},
    "shared": {"epochs": 40, "batch_size": 64, "eval_batch_size": 500, "lr_max": 0.1, "lr_min": 0.001,
               "lr_t0": 40, "weight_decay": 3e-4, "grad_clip": 5.0},
    "controller": {**_NB201_CTRL, "train_steps": 10, "num_aggregate": 10, "reward_batch_size": 256},
    "search": {"derive_samples": 100, "epoch_derive_samples": 10, "derive_batches": 4, "bn_recalibrate": 4,
               "retrain": False, "checkpoint_every": 0, "shared_sampling": "uniform"},
}
# Controller only: the reward is the table's accuracy of the sampled cell; no network, no data, seconds on a CPU.
PRESETS["nb201-table"] = {
    **_NB201_FINAL,
    "space": "nb201",
    "data": {"source": "cifar10"},
    "space_cfg": {"num_nodes": 4},
    "controller": {**_NB201_CTRL, "reward": "table", "num_aggregate": 10},
    "search": {"table_budget": 500, "retrain": False},
    "shared": {"epochs": 0},
    "run": {"progress": False},
}
PRESETS["nb201-default"] = PRESETS["nb201-table"]
PRESETS["nb201-tiny"] = {
    **PRESETS["tiny"], "space": "nb201", "space_cfg": {"num_nodes": 4},
    "net": {"channels": 4, "num_layers": 1, "keep_prob": 1.0, "aux_weight": 0.0},
    "search": {"derive_samples": 4, "epoch_derive_samples": 2, "checkpoint_every": 3, "retrain": False},
}


def preset_tree(name: str, space: str | None) -> dict:
    """A preset's overrides. ``default`` and ``tiny`` have a variant per space (``macro-tiny``, ``rnn-default``...)."""
    if space is not None and f"{space}-{name}" in PRESETS:
        return PRESETS[f"{space}-{name}"]
    if name not in PRESETS:
        raise ConfigError(f"preset: unknown preset {name!r}; choose one of {', '.join(sorted(PRESETS))}")
    return PRESETS[name]


# ----------------------------------------------------------------------------------------------- loading
_ASCII_INT = re.compile(r"-?[0-9]+")
_ASCII_FLOAT = re.compile(r"[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?|[-+]?(inf|infinity|nan)", re.IGNORECASE)


def _coerce(value: object, tp: object, key: str) -> object:
    """Coerce a string (from the command line) or JSON value to the annotated type."""
    if isinstance(tp, str):
        tp = eval_type(tp)
    origin = typing.get_origin(tp)
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.replace(" ", "").split(",") if v]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key}: expected a comma-separated list of names, got {value!r}")
        return tuple(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        text = str(value).strip()
        if not _ASCII_INT.fullmatch(text):  # int() would also take "+0", "0_0" and non-ASCII digits
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return int(text)
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if isinstance(value, str) and not _ASCII_FLOAT.fullmatch(value.strip()):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            out = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
        if out != out or out in (float("inf"), float("-inf")):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return out
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    raise ConfigError(f"{key}: unsupported type {tp}")


def eval_type(name: str) -> object:
    return {"int": int, "float": float, "str": str, "bool": bool, "tuple[str, ...]": tuple[str, ...]}[name]


def _merge(cfg: Config, tree: dict, errors: list[str], origin: str) -> Config:
    if not isinstance(tree, dict):
        errors.append(f"{origin}: expected an object of sections")
        return cfg
    updates: dict[str, object] = {}
    for sec, values in tree.items():
        if sec == "space":
            if values not in SPACES:
                errors.append(f"space: unknown search space {values!r}; choose one of {', '.join(SPACES)}")
            else:
                updates["space"] = values
            continue
        if sec not in SECTIONS:
            errors.append(f"{origin}: unknown section {sec!r}; valid sections: space, {', '.join(SECTIONS)}")
            continue
        if not isinstance(values, dict):
            errors.append(f"{sec}: expected an object of settings")
            continue
        current = getattr(cfg, sec)
        types_ = {f.name: f.type for f in fields(current)}
        changes = {}
        for key, value in values.items():
            if key not in types_:
                errors.append(f"{sec}.{key}: unknown setting; valid settings of {sec}: {', '.join(types_)}")
                continue
            try:
                changes[key] = _coerce(value, types_[key], f"{sec}.{key}")
            except ConfigError as e:
                errors.extend(e.errors)
        updates[sec] = replace(current, **changes)
    return replace(cfg, **updates)  # type: ignore[arg-type]


def parse_overrides(items: list[str]) -> tuple[dict, list[str]]:
    """``["shared.lr_max=0.1", "space=macro"]`` -> nested dict (values still strings) and errors."""
    tree: dict = {}
    errors = []
    for item in items:
        if "=" not in item:
            errors.append(f"override {item!r}: expected section.key=value")
            continue
        key, value = item.split("=", 1)
        key = key.strip()
        if key == "space":
            tree["space"] = value
            continue
        if key.count(".") != 1:
            errors.append(f"override {item!r}: expected section.key=value (sections: {', '.join(SECTIONS)})")
            continue
        sec, name = key.split(".")
        tree.setdefault(sec, {})
        if not isinstance(tree[sec], dict):
            errors.append(f"override {item!r}: {sec} is not a section")
            continue
        tree[sec][name] = value
    return tree, errors


def load_config(preset: str | None = None, file: str | Path | None = None, overrides: list[str] = (),
                space: str | None = None) -> Config:
    """Defaults <- preset <- file (JSON, same nesting as ``to_dict``) <- overrides <- ``space``."""
    errors: list[str] = []
    cfg = Config()
    name = preset or "default"
    tree = preset_tree(name, space)
    if space is not None and tree.get("space", space) != space:
        raise ConfigError(f"preset {name} is for the {tree['space']} space, not {space}")
    cfg = _merge(cfg, tree, errors, f"preset {name}")
    if file is not None:
        try:
            tree = json.loads(Path(file).read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {file}: not found") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"config file {file}: cannot read ({e.__class__.__name__})") from None
        except json.JSONDecodeError as e:
            raise ConfigError(f"config file {file}: invalid JSON at line {e.lineno} column {e.colno}") from None
        cfg = _merge(cfg, tree, errors, f"config file {file}")
    tree, errs = parse_overrides(list(overrides))
    errors += errs
    cfg = _merge(cfg, tree, errors, "overrides")
    if space is not None:
        cfg = _merge(cfg, {"space": space}, errors, "--space")
    errors += check(cfg)
    if errors:
        raise ConfigError(errors)
    return cfg


def check(cfg: Config) -> list[str]:
    """Range checks that a type cannot express."""
    e = []
    for sec in ("shared", "train"):
        o: OptimConfig = getattr(cfg, sec)
        if o.epochs < 0:
            e.append(f"{sec}.epochs: must be >= 0, got {o.epochs}")
        if o.batch_size < 1:
            e.append(f"{sec}.batch_size: must be >= 1, got {o.batch_size}")
        if o.eval_batch_size < 1:
            e.append(f"{sec}.eval_batch_size: must be >= 1, got {o.eval_batch_size}")
        if o.lr_max <= 0 or o.lr_min < 0:
            e.append(f"{sec}.lr_max/lr_min: learning rates must be positive")
        if o.lr_schedule not in ("cosine", "exp", "constant"):
            e.append(f"{sec}.lr_schedule: expected cosine, exp or constant, got {o.lr_schedule!r}")
        if o.lr_t0 < 1 or o.lr_tmul < 1:
            e.append(f"{sec}.lr_t0/lr_tmul: must be >= 1")
        if o.grad_clip < 0:
            e.append(f"{sec}.grad_clip: must be >= 0")
        if o.cutout < 0:
            e.append(f"{sec}.cutout: must be >= 0")
        if not 0 <= o.momentum < 1:
            e.append(f"{sec}.momentum: must be in [0, 1)")
    for sec in ("net", "final_net"):
        n: NetConfig = getattr(cfg, sec)
        if n.channels < 1:
            e.append(f"{sec}.channels: must be >= 1, got {n.channels}")
        if n.num_layers < 1:
            e.append(f"{sec}.num_layers: must be >= 1, got {n.num_layers}")
        if not 0 < n.keep_prob <= 1:
            e.append(f"{sec}.keep_prob: must be in (0, 1], got {n.keep_prob}")
        if not 0 <= n.drop_path < 1:
            e.append(f"{sec}.drop_path: must be in [0, 1), got {n.drop_path}")
        if n.aux_weight < 0:
            e.append(f"{sec}.aux_weight: must be >= 0")
        if n.cell_output not in ("combine", "concat"):
            e.append(f"{sec}.cell_output: expected combine or concat, got {n.cell_output!r}")
        elif n.cell_residual and n.cell_output != "combine":
            e.append(f"{sec}.cell_residual: needs {sec}.cell_output=combine (a concatenated output's width "
                     "depends on the architecture)")
        for d in ("dropout_e", "dropout_i", "dropout_x", "dropout_l", "dropout_o"):
            if not 0 <= getattr(n, d) < 1:
                e.append(f"{sec}.{d}: must be in [0, 1)")
        if n.rnn_output not in ("loose_ends", "all"):
            e.append(f"{sec}.rnn_output: expected loose_ends or all, got {n.rnn_output!r}")
        if not 0 <= n.rnn_state_clip <= 1e6:
            e.append(f"{sec}.rnn_state_clip: must be in [0, 1000000] (0 = off), got {n.rnn_state_clip}")
    c = cfg.controller
    if c.kind not in ("enas", "random"):
        e.append(f"controller.kind: expected enas or random, got {c.kind!r}")
    if c.lstm_size < 1 or c.train_steps < 0 or c.num_aggregate < 1:
        e.append("controller: lstm_size and num_aggregate must be >= 1, train_steps >= 0")
    if not 0 <= c.baseline_decay < 1:
        e.append(f"controller.baseline_decay: must be in [0, 1), got {c.baseline_decay}")
    if not 0 < c.skip_target < 1:
        e.append(f"controller.skip_target: must be in (0, 1), got {c.skip_target}")
    if cfg.data.valid < 0:
        e.append(f"data.valid: must be >= 0, got {cfg.data.valid}")
    s = cfg.search
    if s.derive_samples < 1 or s.epoch_derive_samples < 0 or s.derive_batches < 1:
        e.append("search: derive_samples and derive_batches must be >= 1, epoch_derive_samples >= 0")
    if s.checkpoint_every < 0:
        e.append("search.checkpoint_every: must be >= 0")
    if s.bn_recalibrate < 0:
        e.append(f"search.bn_recalibrate: must be >= 0, got {s.bn_recalibrate}")
    if c.reward not in ("shared", "table"):
        e.append(f"controller.reward: expected shared or table, got {c.reward!r}")
    elif c.reward == "table" and cfg.space not in TABLE_SPACES:
        e.append(f"controller.reward=table: needs a space with a ground-truth table ({', '.join(TABLE_SPACES)}), "
                 f"not {cfg.space}")
    if c.reward_batch_size < 0:
        e.append(f"controller.reward_batch_size: must be >= 0 (0 = shared.batch_size), got {c.reward_batch_size}")
    if not 0 <= c.reward_noise <= 1:
        e.append(f"controller.reward_noise: must be in [0, 1], got {c.reward_noise}")
    if s.shared_sampling not in ("controller", "uniform"):
        e.append(f"search.shared_sampling: expected controller or uniform, got {s.shared_sampling!r}")
    if s.table_budget < 1:
        e.append(f"search.table_budget: must be >= 1, got {s.table_budget}")
    if s.benchmark_dataset not in ("cifar10", "cifar100", "imagenet16"):
        e.append(f"search.benchmark_dataset: expected cifar10, cifar100 or imagenet16, got {s.benchmark_dataset!r}")
    if c.reward_bn_recalibrate and s.bn_recalibrate == 0:
        e.append("controller.reward_bn_recalibrate: needs search.bn_recalibrate > 0 (the number of batches)")
    if cfg.space_cfg.num_nodes < 1 or cfg.space_cfg.num_layers < 1:
        e.append("space_cfg: num_nodes and num_layers must be >= 1")
    r = cfg.run
    for k in ("bf16", "channels_last"):
        if getattr(r, k) not in ("auto", "on", "off"):
            e.append(f"run.{k}: expected auto, on or off, got {getattr(r, k)!r}")
    if r.compile not in ("on", "off"):
        e.append(f"run.compile: expected on or off, got {r.compile!r}")
    if not (r.device in ("auto", "cpu", "cuda") or r.device.startswith("cuda:")):
        e.append(f"run.device: expected auto, cpu, cuda or cuda:N, got {r.device!r}")
    if r.max_nonfinite < 1:
        e.append("run.max_nonfinite: must be >= 1")
    if r.log_every < 1:
        e.append("run.log_every: must be >= 1")

    # Every other numeric setting has a range too, so a value that would crash (or silently mean nothing)
    # later is refused here: (key, value, low, high, low included, high included); None = unbounded.
    from .spaces import is_text
    def bad(key: str, v: float, lo: float | None, hi: float | None, lo_in: bool = True, hi_in: bool = True):
        if (lo is None or (v >= lo if lo_in else v > lo)) and (hi is None or (v <= hi if hi_in else v < hi)):
            return
        if hi is None:
            e.append(f"{key}: must be {'>=' if lo_in else '>'} {lo}, got {v}")
        elif lo is None:
            e.append(f"{key}: must be {'<=' if hi_in else '<'} {hi}, got {v}")
        else:
            e.append(f"{key}: must be in {'[' if lo_in else '('}{lo}, {hi}{']' if hi_in else ')'}, got {v}")

    d = cfg.data
    bad("data.image_size", d.image_size, 0, 4096)
    bad("data.limit_per_class", d.limit_per_class, 0, None)
    if d.pad != -1 and not 0 <= d.pad <= 64:
        e.append(f"data.pad: must be -1 (image_size // 8) or in [0, 64], got {d.pad}")
    if d.valid >= 1 and (d.valid != int(d.valid) or d.valid < 2):
        e.append(f"data.valid: a fraction in [0, 1) or a whole count >= 2 of held-out images, got {d.valid}")
    bad("data.vocab_size", d.vocab_size, 2, 10_000_000)
    bad("data.bptt", d.bptt, 1, 100_000)
    known = {"digits": 8, "cifar10": 32, "cifar100": 32}  # image sides of the named datasets
    side = d.image_size or known.get(d.source)
    if side and not is_text(cfg.space):
        for sec in ("shared", "train"):
            if getattr(cfg, sec).cutout > side:
                e.append(f"{sec}.cutout: {getattr(cfg, sec).cutout} is larger than the {side}x{side} images")
        if d.pad > side:
            e.append(f"data.pad: {d.pad} is larger than the {side}x{side} images")
    bad("space_cfg.num_nodes", cfg.space_cfg.num_nodes, 1, 64)
    bad("space_cfg.num_layers", cfg.space_cfg.num_layers, 1, 256)
    for sec in ("net", "final_net"):
        n = getattr(cfg, sec)
        if n.channels >= 1:
            bad(f"{sec}.channels", n.channels, 1, 4096)
        if n.num_layers >= 1:
            bad(f"{sec}.num_layers", n.num_layers, 1, 256)
        bad(f"{sec}.stem_multiplier", n.stem_multiplier, 1, 16)
        bad(f"{sec}.embed_size", n.embed_size, 1, 16384)
        bad(f"{sec}.hidden_size", n.hidden_size, 1, 16384)
        bad(f"{sec}.init_range", n.init_range, 0, 10, lo_in=False)
    for sec in ("shared", "train"):
        o = getattr(cfg, sec)
        if o.lr_max > 0 and o.lr_min > o.lr_max:
            e.append(f"{sec}.lr_min: must be <= {sec}.lr_max ({o.lr_max}), got {o.lr_min}")
        bad(f"{sec}.lr_decay", o.lr_decay, 0, 1, lo_in=False)
        bad(f"{sec}.lr_decay_start", o.lr_decay_start, 0, None)
        bad(f"{sec}.weight_decay", o.weight_decay, 0, None)
        bad(f"{sec}.ar_alpha", o.ar_alpha, 0, None)
        bad(f"{sec}.tar_beta", o.tar_beta, 0, None)
    if c.lstm_size >= 1:
        bad("controller.lstm_size", c.lstm_size, 1, 4096)
    bad("controller.lr", c.lr, 0, None, lo_in=False)
    bad("controller.beta1", c.beta1, 0, 1, hi_in=False)
    bad("controller.eps", c.eps, 0, None, lo_in=False)
    bad("controller.temperature", c.temperature, 0, None)  # 0 = none
    bad("controller.tanh_constant", c.tanh_constant, 0, None)  # 0 = none
    bad("controller.op_tanh_reduce", c.op_tanh_reduce, 0, None, lo_in=False)
    bad("controller.entropy_weight", c.entropy_weight, 0, None)
    bad("controller.skip_weight", c.skip_weight, 0, None)
    bad("controller.reward_c", c.reward_c, 0, None, lo_in=False)
    bad("controller.warmup_epochs", c.warmup_epochs, 0, None)
    bad("run.seed", r.seed, 0, 2**53)  # the derived generator seeds (seed * 1000 + k) stay below 2**64
    return e


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(tree: dict) -> Config:
    """Rebuild a Config from ``to_dict`` output (e.g. a run directory's config.json)."""
    errors: list[str] = []
    cfg = _merge(Config(), tree, errors, "config")
    errors += check(cfg)
    if errors:
        raise ConfigError(errors)
    return cfg


# keep `types` imported for annotations evaluated by typing in older Pythons
_ = types
