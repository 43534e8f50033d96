"""``python -m spidercache.server ARGS``: run the cache server in the foreground.

This is what ``spidercache server start`` launches as its daemon. It takes the
same options as ``spidercache server start`` but imports only the server (not
every command group of the CLI), which keeps the server's resident memory small.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import UserError


def main(argv: list[str] | None = None) -> int:
    from .memory import tune_allocator

    tune_allocator()  # before any thread makes its own malloc arena (see memory.py)
    from ..cli.server import parse_memory
    from .admin import resolve_token
    from .daemon import configure_logging, run_foreground
    from .service import ServeOptions
    from .sessions import ServerConfig

    p = argparse.ArgumentParser(prog="python -m spidercache.server", add_help=False)
    p.add_argument("-m", "--memory", default="1G")
    p.add_argument("-s", "--spill-dir", default=None)
    p.add_argument("--no-spill", action="store_true")
    p.add_argument("-w", "--workers", type=int, default=8)
    p.add_argument("-h", "--host", default="127.0.0.1")
    p.add_argument("-p", "--port", type=int, default=50052)
    p.add_argument("--persist", action="store_true")
    p.add_argument("--policy", default=None)
    p.add_argument("--token", default=None)
    p.add_argument("--max-message-mb", type=int, default=128)
    args = p.parse_args(argv)
    try:
        if args.no_spill and args.spill_dir:
            raise UserError("give either --spill-dir or --no-spill, not both")
        if args.persist and (args.no_spill or not args.spill_dir):
            raise UserError("--persist needs a spill directory (-s DIR)")
        if args.policy:
            from ..engine.policies import make_policy

            make_policy(args.policy, 1)
        configure_logging()
        config = ServerConfig(memory_bytes=parse_memory(args.memory), spill_dir=None if args.no_spill else args.spill_dir,
                              persist=args.persist, policy=args.policy)
        options = ServeOptions(host=args.host, port=args.port, workers=args.workers,
                               token=resolve_token(args.token), max_message_bytes=args.max_message_mb << 20)
        run_foreground(config, options)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
