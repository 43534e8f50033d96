"""One capacity rule for every front-end (trace simulator, embedding evaluation).

``capacity_for(size, n_keys)``: a size in (0, 1] is a fraction of ``n_keys``
(the trace's distinct keys, or its footprint in bytes for a byte-sized cache),
rounded to the nearest integer and never below 1; a whole number above 1 is
itself (a count of objects or of bytes). ``parse_size`` reads the text forms a
user types (``0.01``, ``5000``, ``1GiB``, ``512MiB``, ``1.5e9``).
"""

from __future__ import annotations

import math
import re

from ..errors import UserError

# Binary and decimal byte units; a size with a unit is a number of bytes.
_UNITS = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "pb": 10**15,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
    "pib": 2**50,
    "k": 2**10,
    "m": 2**20,
    "g": 2**30,
    "t": 2**40,
}
_SIZE_RE = re.compile(r"^\s*([+-]?[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*$")


def check_size(size: float) -> None:
    """A size must be a finite number > 0; above 1 it must be whole."""
    if isinstance(size, bool) or not isinstance(size, (int, float)):
        raise UserError(f"cache size must be a number, got {size!r}")
    if not math.isfinite(size) or size <= 0:
        raise UserError(f"cache size must be > 0 (a fraction <= 1 or a whole number), got {size:g}")
    if size > 1 and size != int(size):
        raise UserError(f"a cache size above 1 is a count and must be whole, got {size:g}")


def capacity_for(size: float, n_keys: int) -> int:
    """Fraction (<= 1) of ``n_keys`` rounded to the nearest integer (at least 1); a count is itself."""
    check_size(size)
    if size <= 1:
        return max(1, int(round(size * int(n_keys))))
    return int(size)


def parse_size(text: str) -> tuple[float, bool]:
    """``"0.1"`` -> (0.1, False); ``"512MiB"`` -> (536870912, True): (size, given in bytes)."""
    m = _SIZE_RE.match(str(text))
    if m is None:
        raise UserError(f"cache size {str(text).strip()!r} is not a number (e.g. 0.01, 5000, 1GiB)")
    number, unit = m.group(1), m.group(2).lower()
    if unit and unit not in _UNITS:
        raise UserError(
            f"cache size {str(text).strip()!r}: unknown unit {m.group(2)!r}; use B, KiB, MiB, GiB, KB, MB, GB"
        )
    value = int(number) if number.lstrip("+-").isdigit() else float(number)  # whole numbers stay exact
    if unit:
        size = value * _UNITS[unit]
        if size < 1 or size != int(size):
            raise UserError(f"cache size {str(text).strip()!r} is not a whole number of bytes")
        return int(size), True
    check_size(value)
    return (int(value) if value > 1 else float(value)), False
