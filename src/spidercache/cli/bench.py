"""`spidercache bench` lists the benchmarks; `spidercache bench NAME [options]` runs one.

The benchmarks live in ``spidercache.bench`` (one module each, named in its
``BENCHMARKS`` table); only the one asked for is imported. Its options are the
keyword parameters of its function, plus what every benchmark has: ``--json``,
``--out PATH`` and, for those that write a docs/bench section,
``--write-docs/--no-write-docs`` and ``--docs-path``.
"""

from __future__ import annotations

import inspect
import shlex
import sys
import typing
from pathlib import Path
from typing import Optional

import typer

_COMMON = {
    "json_out": (bool, typer.Option(False, "--json", help="Print the run as JSON instead of a table.")),
    "out": (Optional[Path], typer.Option(None, "--out", help="Also write the run as JSON here.")),
}
_DOCS = {
    "write_docs": (
        bool,
        typer.Option(True, "--write-docs/--no-write-docs", help="Write the docs/bench section."),
    ),
}


def _command(name: str, argv: list[str]):
    """A function with the benchmark's options (for typer) that runs it through the runner."""
    from ..bench import load
    from ..bench.runner import HOOKS, run_benchmark

    fn = load(name)
    module = sys.modules[fn.__module__]
    hints = typing.get_type_hints(fn)
    help_text = getattr(module, "HELP", {})
    params = []
    names = getattr(module, "OPTION_NAMES", {})
    for p in inspect.signature(fn).parameters.values():
        if p.name in HOOKS:
            continue
        decls = (names[p.name],) if p.name in names else ()
        option = typer.Option(p.default, *decls, help=help_text.get(p.name, ""))
        params.append(p.replace(kind=p.KEYWORD_ONLY, default=option, annotation=_annotation(p, hints)))
    common = dict(_COMMON)
    if hasattr(module, "markdown"):
        common.update(_DOCS)
        common["docs_path"] = (
            Path,
            typer.Option(Path(module.DOCS), "--docs-path", help="Where the section goes."),
        )
    for key, (annotation, default) in common.items():
        params.append(
            inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
        )

    def command(**kw) -> None:
        extra = {k: kw.pop(k) for k in list(kw) if k in common}
        run_benchmark(
            name,
            kw,
            json_out=extra["json_out"],
            out=extra["out"],
            write_docs=extra.get("write_docs", False),
            docs_path=extra.get("docs_path"),
            command="spidercache " + shlex.join(["bench", name, *argv]),
        )

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = fn.__doc__ or module.__doc__
    return command


def _annotation(p: inspect.Parameter, hints: dict):
    """The option's type: its hint, else the type of its default (text when the default is None)."""
    if p.name in hints:
        return hints[p.name]
    if p.default is None or p.default is inspect.Parameter.empty:
        return Optional[str]
    return type(p.default)


def list_benchmarks() -> list[dict]:
    from ..bench import BENCHMARKS, available

    return [{"name": n, "function": BENCHMARKS[n], "available": available(n)} for n in sorted(BENCHMARKS)]


def bench(ctx: typer.Context, name: Optional[str] = typer.Argument(None, help="Benchmark to run.")) -> None:
    """Benchmarks: each measures ratios against a reference in the same run. NAME --help for its options."""
    if name is None or name.startswith("-"):  # a listing: `bench`, `bench --json`, `bench --help`
        from .output import print_rows

        print_rows(
            list_benchmarks(),
            json_out="--json" in [name, *ctx.args],
            title="benchmarks (spidercache bench NAME)",
            columns=[
                ("name", lambda r: r["name"]),
                ("function", lambda r: r["function"]),
                ("in this build", lambda r: "yes" if r["available"] else "not yet"),
            ],
        )
        return
    run_command(name, list(ctx.args), f"spidercache bench {name}")


def run_command(name: str, args: list[str], prog: str) -> None:
    """Benchmark ``name`` from command-line ``args``: its options come from its function's signature."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command(name=name, context_settings={"help_option_names": ["-h", "--help"]})(_command(name, args))
    code = app(args=args, prog_name=prog, standalone_mode=False)
    if isinstance(code, int) and code:
        raise typer.Exit(code)


# a command whose options are read by the benchmark it runs (``--help`` included)
PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


def register(app: typer.Typer) -> None:
    app.command("bench", context_settings=PASS_THROUGH)(bench)
