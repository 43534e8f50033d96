"""The error types callers can catch.

``UserError`` is a mistake a user can make (bad path, bad size, unknown name):
the CLI prints its message on one line and exits with status 2.
``StoreUnavailable`` is raised by a store whose server went away or never
answered; a ``Cache`` catches it, counts it and serves from the source.
``CorruptValue`` is a stored value that failed its checksum or header check.
"""

from __future__ import annotations


class SpiderCacheError(Exception):
    """Base class of every error Spider Cache raises on purpose."""


class UserError(SpiderCacheError):
    """A mistake in what the user asked for; shown as one line, exit status 2."""


class StoreUnavailable(SpiderCacheError):
    """A store cannot be reached (server down, connection lost, timeout)."""


class CorruptValue(SpiderCacheError):
    """A stored value failed its checksum or its header is malformed."""
