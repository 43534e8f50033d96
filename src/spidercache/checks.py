"""The one range check of arguments, below every layer (like ``errors.py`` and ``paths.py``).

A bad count, size, rate or port ends, before any work starts, in a ``UserError``
whose one line names the argument and the value. The name is the keyword as
written (the Python API's); ``flag=True`` (values a command's options fill: a CLI
command, a benchmark, a config built field for field from a command's options)
shows it as the option the user typed. ``None`` (an option left unset) is not
checked; NaN never passes; of several values the first bad one is named.
"""

from __future__ import annotations

import math

from .errors import UserError


def _fail(key: str, flag: bool, rule: str, value) -> UserError:
    return UserError(f"{'--' + key.replace('_', '-') if flag else key} must be {rule}, got {value}")


def at_least(low: float, *, flag: bool = False, **values: float | None) -> None:
    """Each value ``>= low`` (a count: ``at_least(1, ...)``; not negative: ``at_least(0, ...)``).

    >>> at_least(0, flag=True, storage_latency_ms=-1, threads=None)
    Traceback (most recent call last):
    spidercache.errors.UserError: --storage-latency-ms must be at least 0, got -1
    """
    for key, value in values.items():
        if value is not None and not value >= low:
            raise _fail(key, flag, f"at least {low}", value)


def positive(*, flag: bool = False, **values: float | None) -> None:
    """Each value a finite number ``> 0`` (a learning rate, a time constant, a byte budget).

    >>> positive(lr=float("inf"))
    Traceback (most recent call last):
    spidercache.errors.UserError: lr must be a positive number, got inf
    """
    for key, value in values.items():
        if value is not None and not (value > 0 and math.isfinite(value)):
            raise _fail(key, flag, "a positive number", value)


def between(low: float, high: float, *, flag: bool = False, **values: float | None) -> None:
    """Each value in ``low..high``, both ends included (a port, an image edge, a table count).

    >>> between(0, 65535, flag=True, port=99999)
    Traceback (most recent call last):
    spidercache.errors.UserError: --port must be 0..65535, got 99999
    """
    for key, value in values.items():
        if value is not None and not low <= value <= high:
            raise _fail(key, flag, f"{low}..{high}", value)


_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def flag_value(key: str, value) -> bool:
    """A yes/no option as written (``true``/``false``, ``1``/``0``, ``yes``/``no``), not ``bool(text)``.

    >>> flag_value("rotate", "False")
    False
    >>> flag_value("rotate", "maybe")
    Traceback (most recent call last):
    spidercache.errors.UserError: rotate must be true or false, got 'maybe'
    """
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise UserError(f"{key} must be true or false, got {value!r}")
