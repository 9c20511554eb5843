"""Command line: ``enas search | train | show | ...``. Each handler parses, loads the config and makes one
library call. Errors in user input end with one line on stderr and exit status 2; a stop requested by
SIGINT/SIGTERM saves a checkpoint and exits with 130."""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path

from .errors import EnasError
from .spaces import SPACES  # layer 0, no torch: the CLI stays quick to start

EXIT_USAGE = 2
EXIT_STOPPED = 130

log = logging.getLogger("enas")


class UsageError(EnasError):
    pass


def _int(text: str) -> int:
    """argparse type: an integer written with the ASCII digits 0-9 and an optional minus sign (``int()`` also
    takes ``+1``, ``1_000`` and the digits of other scripts)."""
    if not re.fullmatch(r"-?[0-9]+", text):
        raise ValueError(text)
    return int(text)


_int.__name__ = "int"  # argparse's message: "invalid int value: 'x'"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints a usage block by default)
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def _common(p: argparse.ArgumentParser, *, data: bool = True, run: bool = True) -> None:
    p.add_argument("--space", choices=SPACES, help="search space (default: the preset's)")
    p.add_argument("--preset", help="named configuration (see `enas presets`)")
    p.add_argument("--config", metavar="FILE", help="JSON config file (same nesting as a run's config.json)")
    if data:
        p.add_argument("--data", metavar="NAME_OR_PATH", help="dataset: digits, cifar10, pydoc, or a path")
    if run:
        p.add_argument("--epochs", type=_int, help="number of epochs")
        p.add_argument("--seed", type=_int, help="random seed")
        p.add_argument("--device", help="auto, cpu, cuda or cuda:N")
        p.add_argument("--out", metavar="RUN_DIR", help="run directory (default: ./runs/<verb>-<space>-<time>)")
        p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR where it stopped")
        p.add_argument("--quiet", action="store_true", help="no progress bars, warnings only")
    p.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides")


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="enas", description="Efficient Neural Architecture Search via Parameter Sharing")
    ap.add_argument("--version", action="store_true", help="print the version and exit")
    sub = ap.add_subparsers(dest="verb", parser_class=_Parser)
    s = sub.add_parser("search", help="search, derive the best architecture, retrain it")
    _common(s)
    s.add_argument("--controller", choices=("enas", "random"), help="policy: ENAS controller or uniform random")
    s.add_argument("--seeds", metavar="S1,S2,...", help="independent searches, one per seed (with --engine ray)")
    _engine(s)
    rt = sub.add_parser("retrain", help="retrain the K best derived architectures of a search in parallel (Ray)")
    rt.add_argument("run_dir", help="a finished search run directory")
    rt.add_argument("--top-k", type=_int, default=2, help="how many of the best architectures (default 2)")
    _engine(rt)
    t = sub.add_parser("train", help="train one fixed architecture from scratch")
    t.add_argument("arch", nargs="?", help="architecture: JSON file, run directory, or integer string "
                                           "(optional with --resume)")
    _common(t)
    t.add_argument("--sync-bn", action="store_true", help="under torchrun on GPUs: SyncBatchNorm")
    t.add_argument("--baseline", choices=("lstm",), help="rnn: train instead a tied LSTM language model with "
                                                       "ARCH's parameter count, budget and regularisation")
    sh = sub.add_parser("show", help="print an architecture and the size of the network it builds")
    sh.add_argument("arch", help="architecture: JSON file, run directory, or integer string")
    _common(sh, run=False)
    sh.add_argument("--format", choices=("text", "json", "enas", "dot", "svg", "png"), default="text")
    sh.add_argument("--output", "-o", metavar="FILE", help="write the drawing here (dot/svg/png)")
    sh.add_argument("--force", action="store_true", help="replace an existing -o FILE")
    sub.add_parser("presets", help="list the named configurations")
    r = sub.add_parser("report", help="write RUN_DIR/report.html, a self-contained HTML report of a run")
    r.add_argument("run_dir")
    e = sub.add_parser("export", help="export a trained model (TorchScript, ONNX, state_dict, architecture JSON)")
    e.add_argument("run_dir", help="a training run directory, or a search run directory (its final/)")
    e.add_argument("--out", metavar="DIR", help="output directory (default: RUN_DIR/export)")
    e.add_argument("--format", action="append", metavar="FMT",
                   help="torchscript, onnx, state_dict, json (repeat or comma-separate; default: all)")
    e.add_argument("--force", action="store_true", help="allow an --out that is (or is inside) another run directory")
    rk = sub.add_parser("rank", help="ranking fidelity: supernet scores vs stand-alone training (writes rank.json)")
    rk.add_argument("run_dir", help="a search run directory (with its checkpoint)")
    rk.add_argument("--archs", type=_count_or_all, default=20,
                    help="architectures sampled uniformly (default 20); 'all' with --ground-truth: every cell")
    rk.add_argument("--ground-truth", choices=("nb201",), metavar="BENCHMARK",
                    help="truth from the benchmark's table (nb201) instead of stand-alone training")
    rk.add_argument("--epochs", type=_int, default=1, help="stand-alone training epochs per architecture (default 1)")
    rk.add_argument("--bn-recalibrate", type=_int, metavar="N",
                    help="training batches to re-estimate BN statistics per architecture (default: the search's "
                         "search.bn_recalibrate, or 10 if that is 0)")
    rk.add_argument("--batches", type=_int, default=10, help="validation batches each architecture is scored on")
    rk.add_argument("--top-k", type=_int, default=5, help="k of the top-k overlap (default 5)")
    rk.add_argument("--seed", type=_int, default=0, help="seed of the architecture sample")
    rk.add_argument("overrides", nargs="*", metavar="section.key=value",
                    help="changes to the stand-alone training protocol (final_net.*, train.*)")
    cp = sub.add_parser("compare", help="ENAS vs random controller over seeds, same budget and final protocol")
    cp.add_argument("--seeds", required=True, help="comma-separated seeds, e.g. 0,1,2")
    _common(cp)
    cp.add_argument("--force", action="store_true", help="allow an --out that is (or is inside) a run directory")
    sub.add_parser("doctor", help="print torch, CUDA, device, threads and which optional parts are available")
    return ap


def _engine(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", choices=("ray",), help="run the trials in parallel on a Ray cluster")
    p.add_argument("--address", metavar="ADDR", help="Ray cluster address (default: start a local one)")
    p.add_argument("--cpus-per-trial", type=float, default=1, help="CPUs each trial reserves (default 1)")
    p.add_argument("--gpus-per-trial", type=float, default=0, help="GPUs each trial reserves (default 0)")


def _load_cfg(args: argparse.Namespace, verb: str, run_config: Path | None = None):
    """The config from --preset/--config/flags/overrides; ``run_config`` (the config.json of the run that ARCH
    names) is the base instead of the preset when neither --preset nor --config is given."""
    from . import config as C
    overrides = list(args.overrides or [])
    if getattr(args, "data", None):
        overrides.append(f"data.source={args.data}")
    if getattr(args, "seed", None) is not None:
        overrides.append(f"run.seed={args.seed}")
    if getattr(args, "device", None):
        overrides.append(f"run.device={args.device}")
    if getattr(args, "epochs", None) is not None:
        if args.epochs < 0:
            raise C.ConfigError(f"--epochs: must be >= 0, got {args.epochs}")
        overrides.append(("shared.epochs=" if verb == "search" else "train.epochs=") + str(args.epochs))
    if getattr(args, "controller", None):
        overrides.append(f"controller.kind={args.controller}")
    if getattr(args, "quiet", False):
        overrides.append("run.progress=false")
    preset = args.preset
    file = args.config or (run_config if preset is None else None)
    strict = _loose_numbers(overrides, args.config)
    try:
        cfg = C.load_config(preset=preset, file=file, overrides=overrides, space=args.space)
    except C.ConfigError as e:
        raise C.ConfigError(e.errors + strict) from None
    if strict:
        raise C.ConfigError(strict)
    return cfg


def _loose_numbers(overrides: list[str], config_file: str | None) -> list[str]:
    """Numbers that ``int()`` / ``float()`` would accept but a person did not mean: an integer setting must be
    written with the ASCII digits 0-9 (and an optional minus sign; no ``+``, ``_`` or other scripts' digits),
    a real one without ``_`` or non-ASCII characters. Other bad values are left to the config's own check."""
    import dataclasses
    from . import config as C
    values: list[tuple[str, object]] = []
    for item in overrides:
        key, eq, value = item.partition("=")
        if eq and key.count(".") == 1:
            values.append((key.strip(), value))
    if config_file:
        try:
            tree = json.loads(Path(config_file).read_text())
        except (OSError, ValueError):
            tree = None  # reported by load_config
        if isinstance(tree, dict):
            values += [(f"{sec}.{k}", v) for sec, d in tree.items() if isinstance(d, dict) for k, v in d.items()]
    defaults = C.Config()
    errors = []
    for key, value in values:
        sec, name = key.split(".")
        if sec not in C.SECTIONS or not isinstance(value, str):
            continue
        tp = {f.name: f.type for f in dataclasses.fields(getattr(defaults, sec))}.get(name)
        if tp in ("int", int):
            try:
                int(value)
            except ValueError:
                continue  # "expected an integer" from the config
            if not re.fullmatch(r"-?[0-9]+", value):
                errors.append(f"{key}: expected an integer written with the digits 0-9, got {value!r}")
        elif tp in ("float", float):
            try:
                float(value)
            except ValueError:
                continue
            if not value.isascii() or "_" in value:
                errors.append(f"{key}: expected a number written with the digits 0-9, got {value!r}")
    return errors


_RESUME_FIXED = (("preset", "--preset"), ("config", "--config"), ("space", "--space"), ("data", "--data"),
                 ("epochs", "--epochs"), ("seed", "--seed"), ("device", "--device"), ("controller", "--controller"),
                 ("overrides", "section.key=value overrides"))


def _resume_config(args: argparse.Namespace, verb: str):
    """The run directory to resume and its saved config (``--quiet`` still silences progress bars)."""
    from . import config as C
    from .rundir import read_json
    rd = _resume_dir(args, verb)
    cfg = C.from_dict(read_json(rd / "config.json"))
    if getattr(args, "quiet", False):
        cfg = C.replace(cfg, run=C.replace(cfg.run, progress=False))
    return rd, cfg


def _resume_dir(args: argparse.Namespace, verb: str) -> Path:
    """Check ``--resume RUN_DIR`` and the flags given with it; the run continues with its saved config."""
    if args.out:
        raise UsageError(f"enas {verb}: --resume and --out cannot be combined (the run continues in RUN_DIR)")
    for attr, flag in _RESUME_FIXED:
        if getattr(args, attr, None):
            raise UsageError(f"enas {verb}: {flag} cannot be combined with --resume (the run continues with the "
                             "config.json saved in RUN_DIR)")
    rd = Path(args.resume)
    if not rd.is_dir():
        raise UsageError(f"--resume {rd}: no such run directory")
    if not (rd / "config.json").exists():
        raise UsageError(f"--resume {rd}: no run there (config.json missing)")
    is_train = (rd / "arch.json").exists()
    if verb == "search" and is_train:
        raise UsageError(f"--resume {rd}: this is a training run; continue it with: enas train --resume {rd}")
    if verb == "train" and not is_train:
        raise UsageError(f"--resume {rd}: not a training run (arch.json missing)"
                         + ("; continue a search with: enas search --resume " + str(rd)
                            if (rd / "checkpoint.pt").exists() else ""))
    return rd


def cmd_search(args: argparse.Namespace) -> int:
    from .rundir import Stopper
    from .search import search
    if args.seeds or args.engine:
        return _search_seeds(args)
    stopper = Stopper().install()
    try:
        if args.resume:
            rd, cfg = _resume_config(args, "search")
            result = search(cfg, resume=rd, stop=stopper)
        else:
            cfg = _load_cfg(args, "search")
            result = search(cfg, out=args.out, stop=stopper)
    finally:
        stopper.restore()
    from .distributed import from_env
    if from_env().is_main:  # as run.report asks; a report failure is a warning
        from .report import search_report
        search_report(result["run_dir"])
    _print_result(result)
    return 0


def _search_seeds(args: argparse.Namespace) -> int:
    if not (args.seeds and args.engine == "ray"):
        raise UsageError("enas search: --seeds and --engine ray go together (independent searches on Ray)")
    if args.resume:
        raise UsageError("enas search: --seeds cannot be combined with --resume (resume each seed-S directory)")
    try:
        seeds = [_int(x.strip()) for x in args.seeds.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"--seeds {args.seeds}: expected comma-separated integers, e.g. 0,1,2") from None
    from . import ray_engine
    cfg = _load_cfg(args, "search")
    try:
        summary = ray_engine.search_seeds(cfg, seeds, args.out, address=args.address, cpus=args.cpus_per_trial,
                                          gpus=args.gpus_per_trial)
    finally:
        ray_engine.shutdown_if_started()
    for s, r in zip(summary["seeds"], summary["results"]):
        print(f"seed {s}: derive score {r.get('derive_score')}  {r['run_dir']}")
    print(f"best seed: {summary['winner_seed']}")
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    if args.engine != "ray":
        raise UsageError("enas retrain: pass --engine ray (the trials run on a Ray cluster)")
    if args.top_k < 1:
        raise UsageError(f"--top-k: must be >= 1, got {args.top_k}")
    from . import ray_engine
    if (Path(args.run_dir) / "config.json").is_file():
        _lock(Path(args.run_dir))  # it writes RUN_DIR/retrain (each trial locks its own arch-i)
    try:
        s = ray_engine.retrain(args.run_dir, args.top_k, address=args.address, cpus=args.cpus_per_trial,
                               gpus=args.gpus_per_trial)
    finally:
        ray_engine.shutdown_if_started()
    for r in s["results"]:
        print(f"arch-{r['rank']}: valid {r.get('valid_acc')}  test {r.get('test_acc')}  {r['run_dir']}")
    print(f"winner: arch-{s['winner']} (by {s['metric']}): {s['winner_dir']}")
    return 0


def _print_result(result: dict) -> None:
    from . import spaces
    from .distributed import from_env
    if not from_env().is_main:  # under torchrun only rank 0 reports
        return
    mod = spaces.get(result["space"])
    best = result.get("best_arch") or result.get("arch")
    if result.get("baseline"):  # enas train --baseline lstm: the model trained is not the architecture
        print(f"baseline: tied {result['baseline'].upper()} language model, size {result.get('lstm_size')}, "
              f"{result.get('params')} parameters, matched to the cell below ({result.get('cell_params')})")
    print("best architecture:" if "best_arch" in result else "architecture:")
    try:
        space = mod.infer_space(best, mod.default_space())
        print(mod.describe(mod.from_dict(best, space)))
    except Exception:  # noqa: BLE001 - printing is best effort; the JSON is in the run directory
        print(json.dumps(best))
    if result.get("test_acc") is not None:
        print(f"test accuracy: {result['test_acc']:.4f}  parameters: {result.get('params')}")
    elif result.get("test_ppl") is not None or (result.get("final") or {}).get("test_ppl") is not None:
        ppl = result.get("test_ppl") or result["final"]["test_ppl"]
        print(f"test perplexity: {ppl:.2f}  parameters: {result.get('params')}")
    gt = result.get("ground_truth")
    if isinstance(gt, dict):
        ds = result.get("benchmark_dataset", "cifar10")
        print(f"ground truth ({ds}, 200-epoch test accuracy from the benchmark): {gt.get(ds, float('nan')):.2f} %"
              f"  rank {gt.get(f'{ds}_rank')} of {gt.get('of')}  (best {(gt.get('best') or {}).get(ds, float('nan')):.2f} %)")
    print(f"wall time: {result.get('wall_time_s')} s")


def cmd_train(args: argparse.Namespace) -> int:
    from . import build
    from .archio import read_arch
    from .rundir import Stopper
    from .train import train_fixed
    stopper = Stopper().install()
    try:
        if args.resume:
            rd, cfg = _resume_config(args, "train")
            _lock(rd)  # (a fresh training's new directory is locked when it is made)
            arch, _ = read_arch(str(rd / "arch.json"), cfg.space, build.make_space(cfg))
            if args.arch is not None:
                from . import spaces
                mod = spaces.get(cfg.space)
                given, _ = read_arch(args.arch, cfg.space, build.make_space(cfg))
                if mod.to_dict(given) != mod.to_dict(arch):
                    raise UsageError(f"enas train: ARCH differs from the architecture of the run in {rd} "
                                     "(omit ARCH to continue that run)")
            result = train_fixed(cfg, arch, rd, resume=True, stop=stopper, sync_bn=args.sync_bn,
                                 baseline=args.baseline)
        else:
            if args.arch is None:
                raise UsageError("enas train: the following arguments are required: arch (see enas train --help)")
            cfg = _load_cfg(args, "train", _run_config(args.arch))  # a run's own settings, unless overridden
            arch, _ = read_arch(args.arch, cfg.space, build.make_space(cfg))
            result = train_fixed(cfg, arch, args.out, stop=stopper, sync_bn=args.sync_bn,
                                 baseline=args.baseline)
    finally:
        stopper.restore()
    _print_result(result)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from . import build, spaces
    from .archio import read_arch
    cfg = _load_cfg(args, "show", _run_config(args.arch))  # a run's own settings, unless overridden
    mod = spaces.get(cfg.space)
    arch, space = read_arch(args.arch, cfg.space, build.make_space(cfg))
    if args.format == "json":
        print(json.dumps(mod.to_dict(arch), indent=2))
        return 0
    if args.format == "enas":
        print(mod.to_enas_string(arch, space))
        return 0
    if args.format in ("dot", "svg", "png"):
        from .viz import render
        if args.output:
            with _new_output_file(Path(args.output), "-o", args.force):
                text = render(cfg.space, mod.to_dict(arch), args.format, args.output)
        else:
            text = render(cfg.space, mod.to_dict(arch), args.format, None)
        if args.output is None and text is not None:
            print(text)
        elif args.output:
            print(f"wrote {args.output}")
        return 0
    print(mod.describe(arch))
    n, what = network_size(cfg, arch, space, _run_dir(args.arch))
    print(f"parameters: {n:,} ({what})")
    return 0


def _run_dir(arch: str | None) -> Path | None:
    """The run directory that ARCH names (a directory holding a config.json), else None."""
    try:
        p = Path(arch) if arch else None
        return p if p is not None and p.is_dir() and (p / "config.json").is_file() else None
    except (OSError, ValueError):  # an integer string or JSON text too long to be a path
        return None


def _run_config(arch: str | None) -> Path | None:
    rd = _run_dir(arch)
    return None if rd is None else rd / "config.json"


def _run_image_shape(run_dir: Path | None) -> tuple[int, int] | None:
    """(classes, input channels) as the run recorded them (its result.json, or its final training's)."""
    from .rundir import read_json
    if run_dir is None:
        return None
    for path, key in ((run_dir / "result.json", None), (run_dir / "result.json", "final"),
                      (run_dir / "final" / "result.json", None)):
        try:
            r = read_json(path) if path.is_file() else None
        except Exception:  # noqa: BLE001 - a damaged result.json: fall back to the next place
            r = None
        r = r.get(key) if isinstance(r, dict) and key else r
        if isinstance(r, dict) and isinstance(r.get("num_classes"), int) and isinstance(r.get("in_channels"), int):
            return r["num_classes"], r["in_channels"]
    return None


def network_size(cfg, arch, space, run_dir: Path | None = None) -> tuple[int, str]:
    """Parameter count of the network ``enas train`` would build with this config (no data is loaded); the
    classes and input channels are those recorded by the run in ``run_dir``, else assumed from the data name."""
    from . import build, spaces
    from .train import count_params
    if spaces.is_text(cfg.space):
        from .text_task import fixed_lm_model
        m = fixed_lm_model(cfg, arch, space, vocab_size=cfg.data.vocab_size)
        return count_params(m), f"language model, vocabulary {cfg.data.vocab_size}, " \
                                 f"embedding {cfg.final_net.embed_size}, hidden {cfg.final_net.hidden_size}"
    recorded = _run_image_shape(run_dir)
    classes, in_ch = recorded or ((10, 1) if cfg.data.source == "digits" else (10, 3))
    m = build.make_cnn(cfg.space, space, cfg.final_net, num_classes=classes, in_channels=in_ch, arch=arch)
    aux = "" if cfg.final_net.aux_weight == 0 else ", auxiliary head excluded"
    depth = spaces.get(cfg.space).network_words(arch, cfg.final_net.num_layers)
    return count_params(m), (f"{cfg.space} network with {cfg.final_net.channels} channels, "
                             f"{depth}, {classes} classes, {in_ch} input channels{'' if recorded else ' (assumed)'}{aux}")


def cmd_presets(args: argparse.Namespace) -> int:
    from .config import PRESETS
    for name in sorted(PRESETS):
        print(f"{name:16s} space={PRESETS[name].get('space', 'micro')}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import cli_report
    if (Path(args.run_dir) / "config.json").is_file():
        _lock(Path(args.run_dir))  # it writes RUN_DIR/report.html
    return cli_report(args.run_dir)


def _count_or_all(text: str) -> int:
    """``--archs``: a count, or ``all`` (0: every cell of a benchmark)."""
    if text == "all":
        return 0
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a count or 'all', got {text!r}") from None


def cmd_rank(args: argparse.Namespace) -> int:
    from . import config as C
    from .evaluate import rank_run
    from .rundir import Stopper
    strict = _loose_numbers(list(args.overrides or []), None)
    if strict:
        raise C.ConfigError(strict)
    if args.seed < 0:
        raise UsageError(f"--seed: must be >= 0, got {args.seed}")
    if (Path(args.run_dir) / "config.json").is_file():
        _lock(Path(args.run_dir))  # it writes rank.json and rank/ into the run
    stopper = Stopper().install()
    try:
        res = rank_run(args.run_dir, archs=args.archs, epochs=args.epochs, bn_recalibrate=args.bn_recalibrate,
                       score_batches=args.batches, seed=args.seed, top_k=args.top_k, overrides=args.overrides or [],
                       stop=stopper, ground_truth=args.ground_truth)
    finally:
        stopper.restore()
    from .report import write_run_report
    write_run_report(args.run_dir)  # with the ranking section, as run.report asks; a failure is a warning
    print(f"Kendall tau {res['kendall_tau']:.3f}  Spearman rho {res['spearman_rho']:.3f}  "
          f"top-{res['top_k']} overlap {res['top_k_overlap']:.2f}  top-{res['top_k']} regret {res['top_k_regret']:.4g}"
          f"  ({res['archs']} architectures, {res['primary']}"
          + (f", truth: {res['ground_truth']} table)" if res.get("ground_truth") else ")"))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .evaluate import compare_seeds
    from .rundir import Stopper
    if args.resume:
        raise UsageError("enas compare: --resume is not needed; run the same command again (finished runs in --out "
                         "are reused, interrupted ones resumed)")
    try:
        seeds = [_int(s) for s in args.seeds.replace(" ", "").split(",") if s]
    except ValueError:
        raise UsageError(f"--seeds {args.seeds!r}: expected comma-separated integers") from None
    if args.seed is not None:
        raise UsageError("enas compare: use --seeds, not --seed")
    cfg = _load_cfg(args, "search")
    out = args.out or f"runs/compare-{cfg.space}"
    _refuse_run_output(Path(out), "--out", args.force)
    stopper = Stopper().install()
    try:
        res = compare_seeds(cfg, seeds, out, stop=stopper)
    finally:
        stopper.restore()
    from .report import write_compare_reports
    write_compare_reports(out, res)  # each new run's report and the comparison page, out/report.html
    st = res["stats"]
    print(f"{res['metric']}: enas {st['enas']['mean']:.4f} ± {st['enas']['std']:.4f}  random "
          f"{st['random']['mean']:.4f} ± {st['random']['std']:.4f}  Welch p = {res['welch']['p']}")
    print(f"written: {out}/compare.json, {out}/report.html")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Export into a staging directory next to the target and move the files into place only when every
    format was written and verified: a failed export leaves the target as it was and removes what it made."""
    import os
    import shutil
    import tempfile
    from .export import FORMATS, ExportError, export_run, resolve_run_dir
    from .rundir import created_top, run_root
    run_dir = Path(args.run_dir)
    resolve_run_dir(run_dir)  # a missing or untrained run is reported before anything is made
    target = Path(args.out) if args.out else run_dir / "export"
    if args.out:
        _refuse_run_output(target, "--out", args.force, source=run_dir)
    if target.exists() and not target.is_dir():
        raise ExportError(f"{target}: exists and is not a directory")
    fmts = FORMATS if not args.format else [f.strip() for item in args.format for f in item.split(",") if f.strip()]
    root = run_root(target)
    if (root / "config.json").is_file():
        _lock(root)  # it writes into a run (by default RUN_DIR/export)
    top = created_top(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    except OSError as e:
        if top is not None:
            shutil.rmtree(top, ignore_errors=True)
        raise ExportError(f"{target}: cannot create ({e.strerror})") from None
    named = _RenameInLog(staging, target)  # the log names the target, not the staging directory
    logging.getLogger("enas").addFilter(named)
    try:
        written = export_run(run_dir, staging, formats=fmts)
        target.mkdir(exist_ok=True)
        for p in staging.iterdir():
            os.replace(p, target / p.name)
    except BaseException:
        if top is not None:
            shutil.rmtree(top, ignore_errors=True)
        raise
    finally:
        logging.getLogger("enas").removeFilter(named)
        shutil.rmtree(staging, ignore_errors=True)
    for key in ("torchscript", "onnx", "state_dict", "arch", "model_card", "vocab"):
        if key in written:
            print(f"{key:12s} {target / written[key].name}")
    return 0


class _RenameInLog(logging.Filter):
    def __init__(self, old: Path, new: Path):
        super().__init__()
        self.old, self.new = str(old), str(new)

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if self.old in msg:
            record.msg, record.args = msg.replace(self.old, self.new), ()
        return True


def _lock(run: Path) -> None:
    """Hold the lock of the run at ``run`` until this command ends (a second writer gets "in use")."""
    from .rundir import lock_run
    lock_run(run)


def _refuse_run_output(out: Path, flag: str, force: bool, source: Path | None = None) -> None:
    """An output directory that is a run, or lies inside a run other than ``source``, is refused unless
    ``--force`` (a file there is refused always: a directory is needed)."""
    from .rundir import run_root
    if out.exists() and not out.is_dir():
        raise UsageError(f"{flag} {out}: exists and is not a directory")
    if force:
        return
    if (out / "config.json").is_file():
        raise UsageError(f"{flag} {out}: is a run directory; choose another {flag} (or pass --force to write there)")
    root = run_root(out)
    if (root / "config.json").is_file() and (source is None or run_root(source).resolve() != root.resolve()):
        raise UsageError(f"{flag} {out}: is inside the run directory {root}; choose another {flag} (or pass --force "
                         "to write there)")


class _new_output_file:
    """``-o FILE``: refuse an existing file unless ``--force``; lock the run it is written into, if any; on
    failure remove the file if this command created it (and the directories it made for it)."""

    def __init__(self, path: Path, flag: str, force: bool):
        from .rundir import created_top, run_root
        if path.is_dir():
            raise UsageError(f"{flag} {path}: is a directory; give a file name")
        if path.exists() and not force:
            raise UsageError(f"{flag} {path}: exists; pass --force to replace it")
        root = run_root(path.parent)
        if (root / "config.json").is_file():
            _lock(root)
        self.path, self.existed, self.top = path, path.exists(), created_top(path.parent)

    def __enter__(self) -> "_new_output_file":
        return self

    def __exit__(self, kind, value, tb) -> bool:  # noqa: ANN001
        if kind is not None:
            import shutil
            if not self.existed:
                self.path.unlink(missing_ok=True)
            if self.top is not None:
                shutil.rmtree(self.top, ignore_errors=True)
        return False


def cmd_doctor(args: argparse.Namespace) -> int:
    """Print what this installation runs on and which optional parts it can use."""
    from .environment import doctor_lines
    print("\n".join(doctor_lines()))
    return 0


HANDLERS = {"search": cmd_search, "retrain": cmd_retrain, "train": cmd_train, "show": cmd_show, "presets": cmd_presets,
            "report": cmd_report, "export": cmd_export, "rank": cmd_rank, "compare": cmd_compare,
            "doctor": cmd_doctor}


def main(argv: list[str] | None = None) -> int:
    from .rundir import held_locks, release_locks
    before = held_locks()
    try:
        return _main(argv)
    finally:  # the run directories this command locked are free again (and their lock files gone)
        release_locks(held_locks() - before)


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        args, extra = parser.parse_known_args(argv)
        # overrides may come anywhere (argparse takes a positional list only once, e.g. not after --out X)
        if extra and hasattr(args, "overrides") and not any(a.startswith("-") for a in extra):
            args.overrides = list(args.overrides or []) + extra
        elif extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        if args.version:
            from . import __version__
            print(__version__)
            return 0
        if args.verb is None:
            parser.print_help()
            return EXIT_USAGE
        if getattr(args, "quiet", False):
            logging.getLogger().setLevel(logging.WARNING)
        return HANDLERS[args.verb](args)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_STOPPED
    except Exception as e:  # noqa: BLE001 - map known errors to one line
        return _report(e)


def _report(e: Exception) -> int:
    from .rundir import Stopped
    if isinstance(e, Stopped):
        print(str(e), file=sys.stderr)
        return EXIT_STOPPED
    if isinstance(e, EnasError):  # every error of ours for bad input or a refused step: one line, its exit code
        msg = str(e).replace("\n", " ")
        print(f"error: {msg}", file=sys.stderr)
        return e.exit_code
    if isinstance(e, ValueError) and str(e).startswith("run.device"):
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    if isinstance(e, OSError):  # disk full, permissions: the run directory keeps its last checkpoint
        import errno
        where = f" ({e.filename})" if e.filename else ""
        print(f"error: {e.strerror or e}{where}", file=sys.stderr)
        # not allowed to read or write there: the user's to fix, like any bad input
        return EXIT_USAGE if isinstance(e, PermissionError) or e.errno == errno.EROFS else 1
    return _internal_error(e)


def _internal_error(e: BaseException) -> int:
    """An error that is ours, not the input's: one line naming it and a file with the traceback, exit 1."""
    import tempfile
    import time
    import traceback
    first = (str(e).strip().splitlines() or [""])[0][:300]
    what = f"{type(e).__name__}: {first}" if first else type(e).__name__
    try:
        fd, path = tempfile.mkstemp(prefix=time.strftime("enas-traceback-%Y%m%d-%H%M%S-"), suffix=".txt")
        with open(fd, "w") as f:
            f.write(f"enas {' '.join(sys.argv[1:])}\n\n")
            f.write("".join(traceback.format_exception(type(e), e, e.__traceback__)))
        where = f"; the traceback is in {path} (please report it)"
    except OSError:
        where = " (the traceback could not be saved)"
    print(f"error: internal error ({what}){where}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
