"""The `covsim` command line: `covsim list`, `covsim check NAME`, `covsim plot NAME`.

Checks are found through the ``covsim.checks`` entry-point group (covsim's own and any
other installed package's). The CLI enables float64 in JAX at startup (the library
itself never does) and JAX's persistent compilation cache under the user's cache folder
(`$XDG_CACHE_HOME/covsim/jax`, default `~/.cache/covsim/jax`; `--no-compile-cache` or
`COVSIM_NO_COMPILE_CACHE=1` turns it off, `COVSIM_COMPILE_CACHE=DIR` moves it).

Scale-out: the seeds of a cell are laid out over every local device (`--devices K` to
use fewer; the numbers do not change), and `--shard I/K` runs one task of a job array
(the cells whose index is I mod K) into a shared `--out`; a plain rerun then analyses.
`--coordinator HOST:PORT --num-processes K --process-id I` spreads the seeds over several
hosts (`jax.distributed`; process 0 alone writes).

Exit codes:
  0    every verdict holds or is inconclusive
  1    a claim fails (with --control: the control's verdict is fails, as it should be,
       or any other check fails)
  2    a user's mistake: unknown check, bad option value, unwritable --out, an --out
       folder holding another configuration (one line on stderr, no traceback)
  3    a crash: an unexpected error inside a check (its traceback is printed)
  130  interrupted (finished cells are saved; rerun to resume)
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time
import traceback
from typing import Sequence

__all__ = ["main", "check_main", "EXIT_HOLDS", "EXIT_FAILS", "EXIT_USAGE", "EXIT_CRASH"]

EXIT_HOLDS, EXIT_FAILS, EXIT_USAGE, EXIT_CRASH, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class UsageError(Exception):
    """A mistake in how covsim was called; printed as one line, exit code 2."""


def _registry():
    from covsim.experiments import registry

    return registry


def _resolve_names(names: Sequence[str]) -> list[str]:
    """Expand "all"; UsageError naming the valid names if a name is unknown."""
    known = _registry().check_names()
    if list(names) == ["all"]:
        return known
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UsageError(f"unknown check(s) {', '.join(unknown)}; valid names: "
                         f"{', '.join(known + ['all'])}")
    return list(names)


def _out_for(name: str, args, many: bool) -> pathlib.Path:
    """A single check writes to --out (default results/NAME); several to --out/NAME.

    A control run writes to `<that folder>/control`.
    """
    if many:
        base = pathlib.Path(args.out or "results") / name
    else:
        base = pathlib.Path(args.out) if args.out else pathlib.Path("results") / name
    return base / "control" if getattr(args, "control", False) else base


def _cmd_list(args) -> int:
    reg = _registry()
    for name in reg.check_names():
        try:
            check = reg.load(name)
        except Exception as err:  # a broken check must not hide the others
            print(f"{name}\n    IMPORT ERROR: {type(err).__name__}: {err}\n")
            continue
        print(f"{name}\n    {check.claim}\n    {check.reference}")
        if args.rules:
            for rule in check.rules:
                print(f"    rule {rule.name}: {rule.describe()}")
            control = check.control.description if check.control else "(none declared)"
            print(f"    control: {control}")
        print()
    return EXIT_HOLDS


def _print_table(rows: list[tuple[str, str, float, str]]) -> None:
    """The verdict table; reasons are printed whole (wrapped under the row, not cut)."""
    width = max([len(r[0]) for r in rows] + [5])
    print(f"\n{'check':<{width}}  {'verdict':<12}  {'seconds':>8}  reason")
    for name, verdict, secs, reason in rows:
        print(f"{name:<{width}}  {verdict:<12}  {secs:8.1f}  {reason}")


def _check_writable(path: pathlib.Path) -> None:
    """UsageError unless `path` can be created as a folder and written into."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".covsim-write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise UsageError(f"--out {path} is not writable: {err.strerror or err}") from None


def compile_cache_dir() -> pathlib.Path:
    """Where the CLI keeps JAX's persistent compilation cache."""
    if os.environ.get("COVSIM_COMPILE_CACHE"):
        return pathlib.Path(os.environ["COVSIM_COMPILE_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "covsim" / "jax"


def _enable_compile_cache(args) -> None:
    """Turn on JAX's persistent compilation cache unless told not to (or not writable)."""
    import jax

    if getattr(args, "no_compile_cache", False) or os.environ.get(
            "COVSIM_NO_COMPILE_CACHE", "") not in ("", "0"):
        return
    path = compile_cache_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        print(f"covsim: warning: no compilation cache ({path}: {err.strerror or err})",
              file=sys.stderr)
        return
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def _set_runtime_checks(args) -> None:
    """Inside the checks' compiled programs, covsim's traced value checks (``eqx.error_if``,
    a host callback) are off unless ``--runtime-checks`` or ``COVSIM_RUNTIME_CHECKS`` asks
    for them: JAX never stores a program holding a host callback in its persistent cache,
    and the checks' inputs are built by validated constructions (eager checks always run).
    The runner refuses a NaN metric either way."""
    import covsim
    from covsim._validate import _env_flag

    env = os.environ.get("COVSIM_RUNTIME_CHECKS", "")
    if getattr(args, "runtime_checks", False):
        covsim.runtime_checks(True)
    elif env.strip() == "":
        covsim.runtime_checks(False)
    else:
        try:
            covsim.runtime_checks(_env_flag(env))
        except ValueError as err:
            raise UsageError(str(err)) from None


def _print_plan(names: list[str], args, many: bool) -> int:
    """--plan: cells, seeds and an estimate per check; nothing runs, nothing is written."""
    from covsim.experiments.runner import plan_check

    print(f"{'check':<24} {'size':<6} {'cells':>6} {'seeds':>6} {'seed-runs':>10}  estimate")
    for name in names:
        check = _registry().load(name)
        out = _out_for(name, args, many)
        plan = plan_check(check, size=args.size, seeds=args.seeds, control=args.control,
                          measured=out)
        if plan["estimate_s"] is None:
            est = f"unknown (no earlier run in {out} to time from)"
        else:
            est = f"~{plan['estimate_s']:.0f} s serial, from {plan['estimate_from']}"
        label = f"{name} (control)" if args.control else name
        print(f"{label:<24} {plan['size']:<6} {plan['cells']:>6} {plan['seeds']:>6} "
              f"{plan['seed_runs']:>10}  {est}")
        if not many:  # one check: its cells, so the plan states the run (sizes, steps)
            cells = check.cells(plan["size"], control=args.control)
            for cell in cells[:12]:
                print("    " + " ".join(f"{k}={v}" for k, v in cell.items()))
            if len(cells) > 12:
                print(f"    … and {len(cells) - 12} more cells")
    print("(estimates scale the seconds per seed-run of the earlier run, compile included: "
          "too low where the planned cells are larger than the earlier run's — more steps, "
          "longer H, wider models —, too high where seeds vectorise or an accelerator helps)")
    return EXIT_HOLDS


def _start_processes(args) -> bool:
    """`jax.distributed.initialize` when --coordinator is given; True on process 0."""
    import jax

    if args.coordinator is None:
        if args.num_processes is not None or args.process_id is not None:
            raise UsageError("--num-processes and --process-id need --coordinator HOST:PORT")
        return True
    if args.num_processes is None or args.process_id is None:
        raise UsageError("--coordinator needs --num-processes and --process-id")
    if not 0 <= args.process_id < args.num_processes:
        raise UsageError(f"--process-id must be in 0..{args.num_processes - 1}, "
                         f"got {args.process_id}")
    if args.shard is not None:
        raise UsageError("--shard and --coordinator do not mix (one splits cells, the other seeds)")
    if args.devices is not None:
        raise UsageError("--devices is for one process; with --coordinator every device is used")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU only; else unused
    jax.distributed.initialize(args.coordinator, num_processes=args.num_processes,
                               process_id=args.process_id)
    return jax.process_index() == 0


def _cmd_check(args) -> int:
    from covsim.experiments.runner import ConfigMismatchError, parse_shard, run_check

    if args.seeds is not None and args.seeds < 1:
        raise UsageError(f"--seeds must be >= 1, got {args.seeds}")
    shard = None
    if args.shard is not None:
        try:
            shard = parse_shard(args.shard)
        except ValueError as err:
            raise UsageError(f"--shard: {err}") from None
        if args.fresh:
            raise UsageError("--fresh with --shard would discard the other shards' cells; "
                             "clear the folder once before starting the array")
    if args.devices is not None:
        import jax

        if not 1 <= args.devices <= jax.local_device_count():
            raise UsageError(f"--devices must be in 1..{jax.local_device_count()} "
                             f"(local {jax.default_backend()} devices), got {args.devices}")
    names = _resolve_names(args.names)
    many = len(names) > 1 or args.names == ["all"]
    if args.plan:
        return _print_plan(names, args, many)
    _enable_compile_cache(args)
    _set_runtime_checks(args)
    lead = _start_processes(args)
    for name in names:
        if lead:
            _check_writable(_out_for(name, args, many))
    rows, worst = [], EXIT_HOLDS
    for name in names:
        start = time.perf_counter()
        check = _registry().load(name)
        if args.control and check.control is None:
            raise UsageError(f"check {name!r} declares no negative control")
        try:
            summary = run_check(check, size=args.size, seeds=args.seeds,
                                out=_out_for(name, args, many), base_seed=args.seed,
                                fresh=args.fresh, progress=not args.quiet, control=args.control,
                                devices=args.devices, shard=shard)
            if summary is None and not lead:
                verdict, reason = "worker", f"process {args.process_id} ran its part of the seeds"
            elif summary is None:  # a job-array task: cells saved, nothing judged
                verdict = f"shard {shard[0]}/{shard[1]}"
                reason = ("cells saved; rerun without --shard (same --out) once every shard "
                          "is done to analyse")
            else:
                verdict, reason = summary.verdict.value, summary.reason
        except KeyboardInterrupt:
            raise
        except (ConfigMismatchError, PermissionError) as err:
            raise UsageError(str(err)) from None
        except Exception as err:
            traceback.print_exc()
            verdict, reason = "crashed", f"{type(err).__name__}: {err}"
        label = f"{name} (control)" if args.control else name
        rows.append((label, verdict, time.perf_counter() - start, reason))
        if verdict == "crashed":
            worst = EXIT_CRASH
        elif verdict == "fails" and worst == EXIT_HOLDS:
            worst = EXIT_FAILS
    if not lead:
        return EXIT_HOLDS
    _print_table(rows)
    return worst


def _cmd_plot(args) -> int:
    from covsim.experiments.runner import plot_check

    names = _resolve_names(args.names)
    many = len(names) > 1 or args.names == ["all"]
    status = EXIT_HOLDS
    for name in names:
        try:
            for path in plot_check(_registry().load(name), out=_out_for(name, args, many)):
                print(path)
        except FileNotFoundError as err:
            raise UsageError(f"covsim plot {name}: {err}") from None
    return status


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="covsim", description=__doc__.split("\n\n")[0],
                                epilog=__doc__[__doc__.index("Exit codes:"):],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="list the registered theory checks")
    ls.add_argument("--rules", action="store_true",
                    help="also print every declared rule and the negative control")

    c = sub.add_parser("check", help="run theory checks and print their verdicts",
                       epilog=__doc__[__doc__.index("Exit codes:"):],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("names", nargs="+", metavar="NAME", help="check name(s), or 'all'")
    size = c.add_mutually_exclusive_group()
    size.add_argument("--quick", dest="size", action="store_const", const="quick",
                      help="small grid, minutes on a laptop CPU (default)")
    size.add_argument("--full", dest="size", action="store_const", const="full",
                      help="paper-scale grid, meant for an accelerator")
    size.add_argument("--tiny", dest="size", action="store_const", const="tiny",
                      help="the test suite's grid (seconds; too few seeds for a verdict)")
    c.set_defaults(size="quick")
    c.add_argument("--control", action="store_true",
                   help="run the negative control instead (its verdict must be 'fails')")
    c.add_argument("--seeds", type=int, default=None, help="seeds per cell (default: the check's)")
    c.add_argument("--out", default=None,
                   help="output folder (default results/NAME; for several checks, the parent)")
    c.add_argument("--fresh", action="store_true", help="discard previous results in the folder")
    c.add_argument("--seed", type=int, default=0, help="base seed of the per-cell keys")
    c.add_argument("--quiet", action="store_true", help="no progress bar or per-cell lines")
    c.add_argument("--devices", type=int, default=None, metavar="K",
                   help="lay each cell's seeds over the first K local devices (default all)")
    c.add_argument("--shard", default=None, metavar="I/K",
                   help="job-array task: run only the cells whose index is I mod K into --out, "
                        "no analysis (e.g. --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)")
    c.add_argument("--plan", action="store_true",
                   help="print cells, seeds and an estimate (timed from the cells already in "
                        "--out) without running anything")
    c.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                   help="several hosts (jax.distributed): process 0's address; the seeds are "
                        "laid out over every process's devices and process 0 alone writes")
    c.add_argument("--num-processes", type=int, default=None, metavar="K",
                   help="with --coordinator: how many processes")
    c.add_argument("--process-id", type=int, default=None, metavar="I",
                   help="with --coordinator: this process's index, 0..K-1")
    c.add_argument("--runtime-checks", action="store_true",
                   help="compile covsim's traced value checks into the checks' programs (off by "
                        "default in the CLI: such programs are never stored in the compile cache; "
                        "COVSIM_RUNTIME_CHECKS=1 does the same)")
    c.add_argument("--no-compile-cache", action="store_true",
                   help="do not use the persistent JAX compilation cache "
                        "(also: COVSIM_NO_COMPILE_CACHE=1)")

    pl = sub.add_parser("plot", help="re-draw figures from saved results")
    pl.add_argument("names", nargs="+", metavar="NAME", help="check name(s), or 'all'")
    pl.add_argument("--out", default=None, help="results folder (as for `check`)")
    pl.add_argument("--control", action="store_true", help="the control run's figures")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `covsim` console script; returns the exit code."""
    import jax

    jax.config.update("jax_enable_x64", True)
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:  # argparse exits 2 on bad usage, 0 on --help
        return int(exit_.code or 0)
    commands = {"list": _cmd_list, "check": _cmd_check, "plot": _cmd_plot}
    try:
        return commands[args.command](args)
    except UsageError as err:
        print(f"covsim: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("covsim: interrupted (finished cells are saved; rerun to resume)", file=sys.stderr)
        return EXIT_INTERRUPTED


def check_main(name: str, argv: Sequence[str] | None = None) -> int:
    """`covsim check NAME ...` with the remaining arguments (for `python -m theory_checks`)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    return main(["check", name, *argv])


if __name__ == "__main__":
    raise SystemExit(main())
