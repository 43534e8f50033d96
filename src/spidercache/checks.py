"""The one range check of arguments, below every layer (like ``errors.py`` and ``paths.py``).

A count, size, rate or port the user gave is checked before any work starts; a bad one
ends in a ``UserError`` whose one line names the argument and the value:

>>> at_least(1, batch_size=0)
Traceback (most recent call last):
  ...
spidercache.errors.UserError: batch_size must be at least 1, got 0
>>> positive(lr=float("inf"))
Traceback (most recent call last):
  ...
spidercache.errors.UserError: lr must be a positive number, got inf

How a name is spelled is decided here, once: the keyword as written (the Python
API's name). With ``flag=True`` (values a command's options fill: a CLI command,
a benchmark's options, a config built field for field from a command's options)
it is shown as the option the user typed:

>>> at_least(0, flag=True, storage_latency_ms=-1)
Traceback (most recent call last):
  ...
spidercache.errors.UserError: --storage-latency-ms must be at least 0, got -1

A value of ``None`` (an option left unset) is not checked; NaN never passes.
Several values are checked in the order given and the first bad one is named.
"""

from __future__ import annotations

import math

from .errors import UserError


def _name(key: str, flag: bool) -> str:
    return f"--{key.replace('_', '-')}" if flag else key


def at_least(low: float, *, flag: bool = False, **values: float | None) -> None:
    """Each value must be ``>= low`` (counts: ``at_least(1, ...)``; ``at_least(0, ...)``: not negative).

    >>> at_least(1, flag=True, epochs=3, threads=None)
    """
    for key, value in values.items():
        if value is not None and not value >= low:
            raise UserError(f"{_name(key, flag)} must be at least {low}, got {value}")


def positive(*, flag: bool = False, **values: float | None) -> None:
    """Each value must be a finite number ``> 0`` (a learning rate, a time constant, a byte budget).

    >>> positive(tau=0.5, local_bytes=1 << 20)
    """
    for key, value in values.items():
        if value is not None and not (value > 0 and math.isfinite(value)):
            raise UserError(f"{_name(key, flag)} must be a positive number, got {value}")


def between(low: float, high: float, *, flag: bool = False, **values: float | None) -> None:
    """Each value must lie in ``low..high``, both ends included (a port, an image edge, a table count).

    >>> between(0, 65535, flag=True, port=99999)
    Traceback (most recent call last):
      ...
    spidercache.errors.UserError: --port must be 0..65535, got 99999
    """
    for key, value in values.items():
        if value is not None and not low <= value <= high:
            raise UserError(f"{_name(key, flag)} must be {low}..{high}, got {value}")
