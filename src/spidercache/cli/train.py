"""`spidercache train`: train a network with its training data served through a cache.

Flags are kebab-case; SpiderCache's original spellings (``--batch_size``,
``--cache_training_data``, ``--working_set_size``, ``--cache_nodes``,
``--host_ip``, ``--port_num``, ``--port_num2``) work as hidden aliases
(``spidercache.cli.canonical_flags``); every flag can also come from
``--config file.toml`` (keys are the flag names with ``_`` or ``-``), and a
flag given on the command line wins over the file. The command is a thin
layer over ``spidercache.data.train.train``.
"""

from __future__ import annotations

import json
import os
from dataclasses import fields
from pathlib import Path

import tomllib
import typer

from ..bench.runner import parse_options
from ..errors import UserError
from . import train_options as o


def load_config_file(path: Path) -> dict:
    from ..data.train import TrainConfig

    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise UserError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"config file {path} is not valid TOML: {exc}") from None
    raw = raw.get("train", raw)  # a [train] table or top-level keys
    names = {f.name for f in fields(TrainConfig)}
    out = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in names:
            raise UserError(f"config file {path}: unknown option {key!r}")
        out[name] = value
    return out


def register(app: typer.Typer) -> None:
    train_cmd.__signature__ = sig = o.signature()  # type: ignore[attr-defined]
    train_cmd.__annotations__ = {p.name: p.annotation for p in sig.parameters.values()}
    app.command("train", context_settings={"allow_interspersed_args": True})(train_cmd)


def train_cmd(**kw) -> None:  # the options: cli/train_options.py
    """Train a network; its training samples come through a cache over slow storage."""
    from ..data.train import train

    ctx, json_out = kw["ctx"], kw["json_out"]
    result = train(_config(ctx, kw["config"], kw["policy_option"], progress=not (kw["quiet"] or json_out)))
    if not result.rows or int(os.environ.get("RANK", "0")) != 0:
        return  # under torchrun only rank 0 reports
    if json_out:
        typer.echo(json.dumps({"rows": result.rows, "summary": result.summary}, indent=1))
        return
    print_summary(result.rows, result.summary)


def _config(ctx: typer.Context, config: Path | None, policy_option: list[str] | None, progress: bool):
    """The TrainConfig of the command line, over the --config file's values (the command line wins)."""
    from ..data.policies import DEFAULT_POLICY
    from ..data.train import TrainConfig

    given = {k: v for k, v in ctx.params.items() if k not in o.NOT_CONFIG}
    given["train_paths"] = list(given["train_paths"] or [])
    values = {}
    if config is not None:
        values.update(load_config_file(config))
    for name, value in given.items():
        source = ctx.get_parameter_source(name)
        # (typer ships its own click: compare the source by name)
        from_default = source is None or getattr(source, "name", "") in ("DEFAULT", "DEFAULT_MAP")
        if config is None or not from_default or name not in values:
            values[name] = value
    if not values.get("policy"):
        values["policy"] = DEFAULT_POLICY
    opts = dict(values.pop("policy_options", {}) or {})
    opts.update(parse_options(policy_option or []))
    values["progress"] = progress
    try:
        cfg = TrainConfig(**values, policy_options=opts)
    except TypeError as exc:
        raise UserError(f"bad option: {exc}") from None
    for f in fields(TrainConfig):  # a --config file can hold any TOML value
        v = getattr(cfg, f.name)
        if f.type in ("int", "int | None") and v is not None and not isinstance(v, int):
            raise UserError(f"option {f.name} must be an integer, got {v!r}")
    return cfg


def print_summary(rows: list[dict], summary: dict) -> None:
    from rich.table import Table

    from .output import console

    t = Table(
        title=f"spidercache train: {summary['policy']} on {summary['train_samples']} samples, "
        f"{summary['network']}, working set {summary['working_set']:g}"
    )
    for col in ("epoch", "loss", "test acc %", "hit", "subst.", "lost", "epoch s", "data wait s"):
        t.add_column(col, justify="right")
    for r in rows:
        t.add_row(
            str(r["epoch"]),
            f"{r['loss']:.3f}",
            f"{r['test_accuracy']:.2f}",
            f"{r['hit_ratio']:.3f}",
            f"{r['substitution_ratio']:.3f}",
            str(r["lost_hits"]),
            f"{r['epoch_seconds']:.2f}",
            f"{r['data_wait_seconds']:.2f}",
        )
    c = console()
    c.print(t)
    c.print(
        f"cache: {summary['backend']}; storage: {summary['storage']}; "
        f"after the first epoch: hit ratio {summary['hit_ratio_after_first_epoch']:.3f}, "
        f"substitution ratio {summary['substitution_ratio_after_first_epoch']:.3f}, "
        f"{summary['mean_epoch_seconds_after_first']:.2f} s per epoch (first "
        f"{summary['first_epoch_seconds']:.2f} s)"
        + (
            f"; {summary['lost_hits']} planned hits read from storage instead (value still on its way in, "
            "or the store failed)"
            if summary["lost_hits"]
            else ""
        )
    )
