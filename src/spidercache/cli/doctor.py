"""`spidercache doctor`: one line per part of the environment (a thin layer over ``spidercache.doctor``)."""

from __future__ import annotations

import json
import sys

import typer


def register(app: typer.Typer) -> None:
    @app.command("doctor")
    def doctor(
        json_out: bool = typer.Option(False, "--json", help="Print a JSON list instead of lines."),
    ) -> None:
        """Check Python, torch, numba, the servers, Fashion-MNIST, shared memory and the GPU."""
        from ..doctor import MISSING, check_environment

        checks = check_environment()
        if json_out:
            json.dump([c.as_dict() for c in checks], sys.stdout, indent=2)
            sys.stdout.write("\n")
        else:
            width = max(len(c.name) for c in checks)
            for c in checks:
                typer.echo(f"{c.status:<7} {c.name:<{width}}  {c.detail}")
        if any(c.status == MISSING for c in checks):
            raise typer.Exit(1)
