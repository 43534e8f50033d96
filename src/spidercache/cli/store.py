"""`spidercache store check SPEC`: open a store, write, read back and delete a probe value.

The quickest way to learn whether a Redis, memcached, LMDB or spill store a job
will use answers and keeps bytes intact, before the job starts.
"""

from __future__ import annotations

import json
import time

import numpy as np
import typer

from ..engine import codec
from ..engine.stores import SPEC_HELP, open_store
from ..errors import CorruptValue, StoreUnavailable

store_app = typer.Typer(help="Check the stores a cache can use.", no_args_is_help=True)

_PROBE_KEY = "spidercache-store-check"


def check_store(spec: str, value_bytes: int = 4096) -> dict:
    """Round-trip one probe value through the store; return timings in ms.

    Raises UserError (bad spec), StoreUnavailable (no answer) or CorruptValue
    (the store gave back other bytes than it was given).
    """
    store = open_store(spec)
    try:
        value = np.random.default_rng().integers(0, 255, value_bytes, dtype=np.uint8)
        t0 = time.perf_counter()
        blob = codec.encode(value)
        (stored,) = store.put_many([_PROBE_KEY], [blob])
        t1 = time.perf_counter()
        if not stored:
            raise StoreUnavailable(
                f"store {spec} refused the {len(blob):,}-byte probe value (full, or larger than its "
                "budget or value limit): try a smaller --value-bytes"
            )
        (raw,) = store.get_many([_PROBE_KEY])
        t2 = time.perf_counter()
        if raw is None:
            raise StoreUnavailable(f"store {spec} accepted a value but returned nothing for it")
        back = codec.decode(raw)
        if not np.array_equal(back, value):
            raise CorruptValue(f"store {spec} returned different bytes than it was given")
        store.delete_many([_PROBE_KEY])
        return {
            "store": spec,
            "value_bytes": value_bytes,
            "put_ms": (t1 - t0) * 1e3,
            "get_ms": (t2 - t1) * 1e3,
        }
    finally:
        store.close()


@store_app.command("check")
def check(
    spec: str = typer.Argument(..., help=SPEC_HELP),
    value_bytes: int = typer.Option(4096, min=1, help="Size of the probe value."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Write, read back and delete one probe value; print the round-trip times."""
    result = check_store(spec, value_bytes)
    if json_out:
        typer.echo(json.dumps({**result, "ok": True, "checksum_verified": True}))
        return
    typer.echo(
        f"ok: {result['store']} put {result['put_ms']:.2f} ms, get {result['get_ms']:.2f} ms "
        f"({value_bytes} bytes, checksum verified)"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(store_app, name="store")
