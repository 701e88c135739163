"""The `covsim` command line: `covsim list`, `covsim check NAME`, `covsim plot NAME`.

The CLI enables float64 in JAX at startup (the library itself never does).
Exit codes: 0 all verdicts hold or are inconclusive; 1 a check fails or crashed;
2 bad usage (e.g. an unknown check name); 130 interrupted.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time
import traceback
from typing import Sequence

__all__ = ["main", "check_main"]


def _registry():
    import theory_checks

    return theory_checks


def _resolve_names(names: Sequence[str]) -> list[str] | None:
    """Expand "all"; None (after printing the valid names) if a name is unknown."""
    known = list(_registry().CHECK_NAMES)
    if list(names) == ["all"]:
        return known
    unknown = [n for n in names if n not in known]
    if unknown:
        print(f"covsim: unknown check(s) {', '.join(unknown)}; valid names: "
              f"{', '.join(known + ['all'])}", file=sys.stderr)
        return None
    return list(names)


def _out_for(name: str, args, many: bool) -> pathlib.Path:
    """A single check writes to --out (default results/NAME); several to --out/NAME."""
    if many:
        return pathlib.Path(args.out or "results") / name
    return pathlib.Path(args.out) if args.out else pathlib.Path("results") / name


def _cmd_list(args) -> int:
    reg = _registry()
    for name in reg.CHECK_NAMES:
        try:
            check = reg.load(name)
        except Exception as err:  # a broken check must not hide the others
            print(f"{name}\n    IMPORT ERROR: {type(err).__name__}: {err}\n")
            continue
        print(f"{name}\n    {check.claim}\n    {check.reference}\n")
    return 0


def _shorten(text: str, width: int = 110) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _print_table(rows: list[tuple[str, str, float, str]]) -> None:
    width = max([len(r[0]) for r in rows] + [5])
    print(f"\n{'check':<{width}}  {'verdict':<12}  {'seconds':>8}  reason")
    for name, verdict, secs, reason in rows:
        print(f"{name:<{width}}  {verdict:<12}  {secs:8.1f}  {_shorten(reason)}")


def _cmd_check(args) -> int:
    from covsim.experiments.runner import run_check

    names = _resolve_names(args.names)
    if names is None:
        return 2
    many = len(names) > 1 or args.names == ["all"]
    rows, worst = [], 0
    for name in names:
        start = time.perf_counter()
        try:
            summary = run_check(_registry().load(name), size=args.size, seeds=args.seeds,
                                out=_out_for(name, args, many), base_seed=args.seed,
                                fresh=args.fresh, progress=not args.quiet)
            verdict, reason = summary.verdict.value, summary.reason
        except KeyboardInterrupt:
            raise
        except Exception as err:
            traceback.print_exc()
            verdict, reason = "crashed", f"{type(err).__name__}: {err}"
        rows.append((name, verdict, time.perf_counter() - start, reason))
        if verdict in ("fails", "crashed"):
            worst = 1
    _print_table(rows)
    return worst


def _cmd_plot(args) -> int:
    from covsim.experiments.runner import plot_check

    names = _resolve_names(args.names)
    if names is None:
        return 2
    many = len(names) > 1 or args.names == ["all"]
    status = 0
    for name in names:
        try:
            for path in plot_check(_registry().load(name), out=_out_for(name, args, many)):
                print(path)
        except Exception as err:
            print(f"covsim plot {name}: {type(err).__name__}: {err}", file=sys.stderr)
            status = 1
    return status


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="covsim", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the registered theory checks")

    c = sub.add_parser("check", help="run theory checks and print their verdicts")
    c.add_argument("names", nargs="+", metavar="NAME", help="check name(s), or 'all'")
    size = c.add_mutually_exclusive_group()
    size.add_argument("--quick", dest="size", action="store_const", const="quick",
                      help="small grid, minutes on a laptop CPU (default)")
    size.add_argument("--full", dest="size", action="store_const", const="full",
                      help="paper-scale grid, meant for an accelerator")
    c.set_defaults(size="quick")
    c.add_argument("--seeds", type=int, default=None, help="seeds per cell (default: the check's)")
    c.add_argument("--out", default=None,
                   help="output folder (default results/NAME; for several checks, the parent)")
    c.add_argument("--fresh", action="store_true", help="discard previous results in the folder")
    c.add_argument("--seed", type=int, default=0, help="base seed of the per-cell keys")
    c.add_argument("--quiet", action="store_true", help="no per-cell progress lines")

    pl = sub.add_parser("plot", help="re-draw figures from saved results")
    pl.add_argument("names", nargs="+", metavar="NAME", help="check name(s), or 'all'")
    pl.add_argument("--out", default=None, help="results folder (as for `check`)")
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
    except KeyboardInterrupt:
        print("covsim: interrupted (finished cells are saved; rerun to resume)", file=sys.stderr)
        return 130


def check_main(name: str, argv: Sequence[str] | None = None) -> int:
    """`covsim check NAME ...` for `python -m theory_checks.NAME [--full] ...`.

    Use at the end of a check module:
    `if __name__ == "__main__": raise SystemExit(check_main("horizon"))`.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    return main(["check", name, *argv])


if __name__ == "__main__":
    raise SystemExit(main())
