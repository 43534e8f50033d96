"""``python -m spidercache.server ARGS``: run the cache server in the foreground.

This is what ``spidercache server start`` launches as its daemon (see
``daemon.server_argv``). It imports only the server (not every command group
of the CLI), which keeps the server's resident memory small.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import UserError


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m spidercache.server")
    p.add_argument("-m", "--memory", default="1G")
    p.add_argument("-s", "--spill-dir", default=None)
    p.add_argument("--no-spill", action="store_true")
    p.add_argument("-w", "--workers", type=int, default=8)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("-p", "--port", type=int, default=50052)
    p.add_argument("--persist", action="store_true")
    p.add_argument("--policy", default=None)
    p.add_argument("--token", default=None)
    p.add_argument("--max-message-mb", type=int, default=None)
    p.add_argument("--max-sessions", type=int, default=None)
    p.add_argument("--log-level", default="info")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from .memory import tune_allocator

    tune_allocator()  # before any thread makes its own malloc arena (see memory.py)
    from .daemon import configure_logging, run_foreground, server_settings

    args = parse(argv)
    try:
        config, options = server_settings(
            memory=args.memory,
            spill_dir=args.spill_dir,
            no_spill=args.no_spill,
            workers=args.workers,
            host=args.host,
            port=args.port,
            persist=args.persist,
            policy=args.policy,
            token=args.token,
            max_message_mb=args.max_message_mb,
            max_sessions=args.max_sessions,
            log_level=args.log_level,
        )
        configure_logging(args.log_level)
        run_foreground(config, options)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
