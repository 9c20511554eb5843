"""Turn configuration data into objects: spaces, networks, controllers, devices, precision contexts."""

from __future__ import annotations

import contextlib
import random
from typing import Callable

import torch
from torch import nn

from . import spaces
from .config import Config, ConfigError, NetConfig
from .controller import Controller, RandomController


def make_space(cfg: Config):
    """The space dataclass for ``cfg.space`` from ``cfg.space_cfg``."""
    sc = cfg.space_cfg
    space = spaces.get(cfg.space).from_config(sc.num_nodes, sc.num_layers, tuple(sc.ops))
    errors = space.check()
    if errors:
        raise spaces.ArchError([f"space_cfg.{e}" for e in errors])
    return space


def make_cnn(space_name: str, space, net: NetConfig, *, num_classes: int, in_channels: int,
             arch=None) -> nn.Module:
    if space_name == "micro":
        from .models.micro import MicroNet
        return MicroNet(space, channels=net.channels, num_layers=net.num_layers, num_classes=num_classes,
                        in_channels=in_channels, arch=arch, aux=net.aux_weight > 0, keep_prob=net.keep_prob,
                        stem_multiplier=net.stem_multiplier, cell_residual=net.cell_residual,
                        cell_output=net.cell_output)
    if space_name == "macro":
        from .models.macro import MacroNet
        return MacroNet(space, channels=net.channels, num_classes=num_classes, in_channels=in_channels,
                        arch=arch, keep_prob=net.keep_prob, double_channels=net.double_channels)
    from .models import build_image_model
    return build_image_model(space_name, space, net, num_classes=num_classes, in_channels=in_channels, arch=arch)


def use_batch_stats(model: nn.Module) -> nn.Module:
    """Make every BatchNorm normalise with the current batch's statistics, in train and eval mode alike.

    Used for the supernet during search (as the reference does): running averages shared by all sampled
    architectures would describe none of them.
    """
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.track_running_stats = False
            m.running_mean = None
            m.running_var = None
            m.num_batches_tracked = None
    return model


def make_controller(cfg: Config, space, device: torch.device) -> nn.Module:
    mod = spaces.get(cfg.space)
    c = cfg.controller
    if c.kind == "random":
        return RandomController([d.size for d in mod.decisions(space)]).to(device)
    return Controller(mod.program(space), hidden=c.lstm_size, temperature=c.temperature,
                      tanh_constant=c.tanh_constant, op_tanh_reduce=c.op_tanh_reduce,
                      skip_target=c.skip_target, op_bias=c.op_bias).to(device)


def resolve_device(name: str) -> torch.device:
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True  # fixed shapes per architecture: let cuDNN pick its kernels
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"run.device: {name} requested but CUDA is not available")
    return torch.device(name)


def flag(value: str, device: torch.device) -> bool:
    return value == "on" or (value == "auto" and device.type == "cuda")


# torch 2.13's CPU backward of a channels-last 1x1 stride-2 convolution with fewer than 4 output channels corrupts
# the heap (the factorized reduction of a cell with fewer than 8 channels: tests/test_layout.py has the repro)
CPU_CHANNELS_LAST_MIN_WIDTH = 8


def channels_last(value: str, device: torch.device, space_name: str, channels: int = 0) -> bool:
    """``run.channels_last``: ``on``/``off``, or ``auto``: on CUDA, and on CPU (oneDNN) for the spaces where it was
    measured to win there (a space's ``CHANNELS_LAST_ON_CPU``; bench/layout.py) at a width of at least
    ``CPU_CHANNELS_LAST_MIN_WIDTH``. ``on`` below that width on CPU is refused (a ConfigError)."""
    narrow = device.type == "cpu" and 0 < channels < CPU_CHANNELS_LAST_MIN_WIDTH
    if value == "on" and narrow:
        raise ConfigError(f"run.channels_last=on needs at least {CPU_CHANNELS_LAST_MIN_WIDTH} channels on CPU "
                          f"(got {channels}): torch's CPU kernels fail on narrower channels-last reductions; "
                          "use run.channels_last=auto or off")
    if value != "auto":
        return value == "on"
    if device.type == "cuda":
        return True
    mod = spaces.get(space_name)
    return (device.type == "cpu" and not narrow and bool(getattr(mod, "CHANNELS_LAST_ON_CPU", False))
            and torch.backends.mkldnn.is_available())


def autocast_factory(cfg: Config, device: torch.device) -> Callable[[], contextlib.AbstractContextManager]:
    if flag(cfg.run.bf16, device):
        return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def seed_everything(seed: int) -> None:
    """Seed the global generators that library code cannot avoid (dropout masks, drop-path)."""
    random.seed(seed)
    torch.manual_seed(seed)


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


def lr_at(epoch: int, o) -> float:
    """Learning rate for an integer epoch: cosine with warm restarts (T0, Tmul), exponential or constant."""
    import math
    if o.lr_schedule == "constant":
        return o.lr_max
    if o.lr_schedule == "exp":
        return max(o.lr_min, o.lr_max * o.lr_decay ** max(0, epoch - o.lr_decay_start + 1))
    t_i, t_cur = o.lr_t0, epoch
    while t_cur >= t_i:
        t_cur -= t_i
        t_i *= o.lr_tmul
    return o.lr_min + 0.5 * (o.lr_max - o.lr_min) * (1 + math.cos(math.pi * t_cur / t_i))


def sgd(params, o, device: torch.device, found_inf: torch.Tensor | None = None) -> torch.optim.Optimizer:
    """Fused SGD (one kernel for the whole update) that skips its step on the device when ``found_inf`` is 1.

    The fused kernel wants a momentum buffer for every parameter it updates, or for none; in a supernet some
    parameters are sampled for the first time while others already hold buffers, so every buffer is made
    up front as zeros (``fill_momentum_buffers``). With no dampening this is the arithmetic of torch's lazy
    first step (``buf = grad``), so the trajectory is the plain SGD one.
    """
    kw = dict(lr=o.lr_max, momentum=o.momentum, nesterov=o.nesterov and o.momentum > 0,
              weight_decay=o.weight_decay)
    opt = torch.optim.SGD(params, fused=True, **kw)
    fill_momentum_buffers(opt)
    if found_inf is not None:
        opt.found_inf = found_inf  # read by SGD.step and passed to the fused kernel (as GradScaler does)
    return opt


def fill_momentum_buffers(opt: torch.optim.Optimizer) -> None:
    """Give every parameter of ``opt`` a momentum buffer (zeros where it has none)."""
    for g in opt.param_groups:
        if g.get("momentum", 0) == 0:
            continue
        for p in g["params"]:
            st = opt.state[p]
            if st.get("momentum_buffer") is None:
                st["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)


def load_optimizer_state(opt: torch.optim.Optimizer, state: dict) -> None:
    """``opt.load_state_dict(state)`` that keeps ``opt``'s own implementation flags.

    ``load_state_dict`` replaces every param group with the saved one, flags included: a checkpoint written by
    a foreach optimizer (before the fused ones) would turn the fused SGD back into a foreach one, which
    refuses the guard's ``found_inf``. The flags are put back, a fused Adam's step counters move to the
    parameters' device (where the fused kernel keeps them), and missing momentum buffers are made.
    """
    flags = [{k: g.get(k) for k in ("fused", "foreach")} for g in opt.param_groups]
    opt.load_state_dict(state)
    for g, f in zip(opt.param_groups, flags):
        g.update(f)
        if f.get("fused"):
            for p in g["params"]:
                st = opt.state.get(p, {})
                if torch.is_tensor(st.get("step")) and st["step"].device != p.device:
                    st["step"] = st["step"].to(device=p.device, dtype=torch.float32)
    fill_momentum_buffers(opt)
