"""Trace simulator: read or generate traces, run the engine's policies over them."""

from .simulate import ROW_KEYS, simulate
from .traces import read_trace, write_trace, zipf

__all__ = ["ROW_KEYS", "simulate", "read_trace", "write_trace", "zipf"]
