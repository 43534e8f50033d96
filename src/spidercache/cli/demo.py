"""`spidercache demo`: the main job that `make demo` runs."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo() -> None:
        """Run the main job on the embedded default.

        Until the training-data cache lands this generates a Zipf trace and
        prints the simulator's table for every policy.
        """
        from ..sim.simulate import demo as run_demo

        run_demo()
