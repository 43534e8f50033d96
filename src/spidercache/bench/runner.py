"""What every benchmark shares: timing (best / median of repeats), output, docs.

A benchmark module ``spidercache.bench.NAME`` has a function (``run``) whose
keyword parameters are its options (typed by their hints, or by their default
values) and which returns rows (a list of dicts, ``Rows`` when it has more to
say about the run, e.g. the trace). Optional module attributes the runner reads:

* ``HELP``: option name -> help text; ``OPTION_NAMES``: option name -> flag
  (e.g. ``{"by_bytes": "--bytes"}``; default ``--name-with-dashes``);
* ``TITLE``: the table's title; ``COLUMNS``: ``[(header, cell(row) -> str)]``,
  or ``table(rows)`` returning a rich renderable; default: every key of the rows;
* ``DOCS`` (a path) and ``markdown(rows, command[, load])`` -> str: the module's
  docs/bench section, written unless ``write_docs=False`` (``load``: the load
  average when the run began); ``check_docs(path)`` may refuse a path before any work;
* ``progress(row) -> str``: a line per finished row, for an ``on_row`` parameter.

A ``log`` parameter of the function, if any, receives progress lines (stderr).
``--json`` prints the rows; ``--out PATH`` writes ``{"benchmark", **info, "rows"}``; an
``info["summary"]`` (ratios over the rows) is printed as one line on stderr.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..console import console
from . import load

Column = tuple[str, Callable[[Mapping[str, Any]], str]]


class Rows(list):
    """A benchmark's rows plus ``info`` (JSON-able facts about the run, e.g. the trace)."""

    def __init__(self, rows: Sequence[dict] = (), info: Mapping[str, Any] | None = None) -> None:
        super().__init__(rows)
        self.info = dict(info or {})


def timings(
    fn: Callable[[], object], repeat: int, *, warmup: bool = False, sync: Callable[[], None] | None = None
) -> list[float]:
    """Seconds of ``repeat`` calls of ``fn`` (after one untimed call when ``warmup``)."""
    if repeat < 1:
        raise ValueError("repeat must be at least 1")
    if warmup:
        fn()
        if sync is not None:
            sync()
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        if sync is not None:
            sync()
        out.append(time.perf_counter() - t)
    return out


def best_of(fn: Callable[[], object], repeat: int, **kw: Any) -> float:
    """The fastest of ``repeat`` timed calls."""
    return min(timings(fn, repeat, **kw))


def median_of(fn: Callable[[], object], repeat: int, **kw: Any) -> float:
    """The median of ``repeat`` timed calls."""
    return statistics.median(timings(fn, repeat, **kw))


def document(name: str, rows: Sequence[dict]) -> dict:
    """The JSON form of a run: ``{"benchmark", **info, "rows"}``."""
    info = getattr(rows, "info", {})
    return {"benchmark": name, **info, "rows": list(rows)}


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def rows_table(rows: Sequence[Mapping[str, Any]], title: str, columns: Sequence[Column] | None = None):
    """A rich table of ``columns`` (default: every key of the rows, in order of appearance)."""
    from rich.table import Table

    if columns is None:
        keys = list(dict.fromkeys(k for r in rows for k in r))
        columns = [(k, (lambda r, k=k: _cell(r.get(k, "")))) for k in keys]
    table = Table(title=title)
    for header, _ in columns:
        table.add_column(header)
    for row in rows:
        table.add_row(*(cell(row) for _, cell in columns))
    return table


HOOKS = ("log", "on_row")  # parameters the runner fills, not options


def run_benchmark(
    name: str,
    options: Mapping[str, Any] | None = None,
    *,
    json_out: bool = False,
    out: str | Path | None = None,
    write_docs: bool = True,
    docs_path: str | Path | None = None,
    command: str = "",
    log: Callable[[str], None] | None = None,
) -> list[dict]:
    """Run benchmark ``name`` with ``options``; print its rows (table or JSON), write JSON / docs."""
    import inspect
    import os

    fn = load(name)
    module = sys.modules[fn.__module__]
    options = dict(options or {})
    docs = Path(docs_path or getattr(module, "DOCS", "")) if hasattr(module, "markdown") else None
    if docs is not None and write_docs and hasattr(module, "check_docs"):
        module.check_docs(docs)
    _check_outputs(out, docs if write_docs else None)
    err = console(stderr=True)
    say = log or (lambda m: err.print(m, highlight=False))
    params = inspect.signature(fn).parameters
    if "log" in params:
        options["log"] = say
    if "on_row" in params and hasattr(module, "progress"):
        options["on_row"] = lambda row: say(module.progress(row))
    load_avg = " ".join(f"{x:.2f}" for x in os.getloadavg())
    rows = fn(**options)
    if json_out:
        json.dump(list(rows), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        title = getattr(module, "TITLE", f"bench {name}")
        table = (
            module.table(rows)
            if hasattr(module, "table")
            else rows_table(rows, title, getattr(module, "COLUMNS", None))
        )
        console().print(table)
    summary = getattr(rows, "info", {}).get("summary")
    if summary:  # a benchmark's ratios over its rows (``info["summary"]``), also in --out
        say("summary: " + json.dumps(summary, default=float))
    if out is not None:
        Path(out).write_text(json.dumps(document(name, rows), indent=1))
        err.print(f"wrote {out}")
    if docs is not None and write_docs:
        docs.parent.mkdir(parents=True, exist_ok=True)
        extra = (load_avg,) if len(inspect.signature(module.markdown).parameters) > 2 else ()
        docs.write_text(module.markdown(rows, command or f"spidercache bench {name}", *extra))
        err.print(f"wrote {docs}")
    return rows


def _check_outputs(out: str | Path | None, docs: Path | None) -> None:
    """The JSON and docs files a run writes at its end must be writable before it starts."""
    from ..errors import UserError
    from ..paths import check_output_path

    if out:
        check_output_path(out)
    if docs is not None:
        try:
            docs.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot write {docs}: {exc.strerror or exc}") from None
        check_output_path(docs)


def parse_options(items: Sequence[str], flag: str = "--policy-option") -> dict:
    """``key=value`` pairs; values are parsed as JSON when they can be (numbers, true/false), else text."""
    from ..errors import UserError

    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"{flag} expects key=value, got {item!r}")
        try:
            out[key.strip().replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip().replace("-", "_")] = value
    return out


def parse_numbers(flag: str, text: str, kind: type = float) -> list:
    """The comma-separated numbers in ``text`` (at least one), each of type ``kind``, else a UserError."""
    from ..errors import UserError

    try:
        values = [kind(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise UserError(f"{flag}: expected comma-separated numbers, got {text!r}") from None
    if not values:
        raise UserError(f"{flag}: no numbers given")
    return values


def check_choices(flag: str, text: str, allowed) -> list[str]:
    """The comma-separated names in ``text``, each one of ``allowed`` (else a UserError)."""
    from ..errors import UserError

    names = [n.strip() for n in text.split(",") if n.strip()]
    for n in names:
        if n not in allowed:
            raise UserError(f"{flag}: unknown name {n!r}; choose from {', '.join(allowed)}")
    if not names:
        raise UserError(f"{flag}: no names given")
    return names
