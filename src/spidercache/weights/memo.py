"""Job results memoized under a content hash (DisCo keeps each job's results on its master).

A job's key is the SHA-256 of

* the function: its qualified name and its source text (so editing the code
  makes a new key instead of returning a stale result),
* its inputs: numbers, strings, lists, dicts, numpy arrays and torch tensors by
  content, datasets by their ``fingerprint()``,
* its parameters (a mapping, order-insensitive).

Results live in an engine store (LMDB by default, Redis or memcached by spec)
encoded with the engine codec (msgpack + arrays, xxh3 checksum; no pickle, since
shared stores can be written by others). Each record repeats its own key, so a
record found under the wrong key (or damaged) is a miss, never a wrong result.
An index record lists the results for ``spidercache results list``.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import struct
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ..engine import codec
from ..errors import CorruptValue, StoreUnavailable, UserError
from .layers import WeightCacheWarning

_RECORD_PREFIX = "memo/"
_INDEX_KEY = "memo-index"


def default_results_path() -> Path:
    base = os.environ.get("SPIDERCACHE_RESULTS")
    if base:
        return Path(base)
    cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache_home) / "spidercache" / "results"


def open_results_store(spec: str | None = None):
    """``lmdb:PATH`` or a bare path (default: the user's cache folder), ``redis://HOST:PORT[/prefix]``,
    ``memcached://HOST:PORT[,HOST:PORT...]``."""
    from ..engine.stores.lmdb_store import LMDBStore

    if spec is None or spec == "":
        return LMDBStore(default_results_path())
    if spec.startswith("redis://") or spec.startswith("redis-cluster://"):
        from ..engine.stores.redis_store import RedisStore

        return RedisStore(url=spec, prefix="sc-results")
    if spec.startswith("memcached://"):
        from ..engine.stores.memcached_store import MemcachedStore
        from .layers import parse_servers

        return MemcachedStore(parse_servers(spec[len("memcached://") :].strip("/")), prefix="sc-results")
    scheme = spec.partition(":")[0]
    if "://" in spec or (":" in spec and scheme != "lmdb" and scheme.isalnum() and len(scheme) > 1):
        raise UserError(
            f"results store {spec!r}: use lmdb:PATH, redis://HOST:PORT or memcached://HOST:PORT,..."
        )
    return LMDBStore(spec[len("lmdb:") :] if spec.startswith("lmdb:") else spec)


# ------------------------------------------------------------------ hashing
def _feed(h: hashlib._Hash, value: Any, depth: int = 0) -> None:
    """Feed a canonical, type-tagged encoding of ``value`` into ``h``."""
    if depth > 50:
        raise UserError("job inputs are nested too deeply to hash")
    if value is None or isinstance(value, bool):
        h.update(b"N" if value is None else (b"T" if value else b"F"))
    elif isinstance(value, int):
        h.update(b"i" + str(value).encode() + b";")
    elif isinstance(value, float):
        h.update(b"f" + struct.pack("<d", value))
    elif isinstance(value, str):
        data = value.encode()
        h.update(b"s" + str(len(data)).encode() + b":" + data)
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        h.update(b"b" + str(len(data)).encode() + b":" + data)
    elif isinstance(value, np.ndarray):
        arr = np.ascontiguousarray(value)
        if arr.dtype.hasobject:
            raise UserError("job inputs: numpy arrays of Python objects cannot be hashed")
        h.update(b"a" + arr.dtype.str.encode() + str(arr.shape).encode())
        h.update(memoryview(arr.reshape(-1).view(np.uint8)))
    elif type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        t = value.detach().cpu().contiguous()
        h.update(b"t" + str(t.dtype).encode() + str(tuple(t.shape)).encode())
        import torch

        h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    elif isinstance(value, Mapping):
        # keys keep their type ({1: x} is not {"1": x}); sorted by their own hash, so any
        # insertion order gives the same key
        items = sorted((_digest(k, depth + 1), v) for k, v in value.items())
        h.update(b"d" + str(len(items)).encode() + b":")
        for k, v in items:
            h.update(k)
            _feed(h, v, depth + 1)
    elif isinstance(value, (list, tuple)):
        # a tuple of inputs is unpacked into arguments and a list is passed whole: not the same job
        h.update((b"l" if isinstance(value, list) else b"u") + str(len(value)).encode() + b":")
        for item in value:
            _feed(h, item, depth + 1)
    elif isinstance(value, Path):
        _feed(h, ("path", str(value)), depth + 1)
    elif callable(getattr(value, "fingerprint", None)):
        _feed(h, ("fingerprint", type(value).__qualname__, value.fingerprint()), depth + 1)
    else:
        raise UserError(
            f"job inputs: cannot hash a {type(value).__name__} (give numbers, text, arrays or a dataset)"
        )


def _digest(value: Any, depth: int) -> bytes:
    h = hashlib.sha256()
    _feed(h, value, depth)
    return h.digest()


def function_identity(fn: Callable) -> tuple[str, str]:
    """(qualified name, source text) of ``fn``; the bytecode stands in when there is no source."""
    name = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        code = getattr(fn, "__code__", None)
        if code is None:
            raise UserError(
                f"cannot memoize {name}: neither its source nor its bytecode is available"
            ) from None
        source = code.co_code.hex() + repr(code.co_consts)
    return name, source


def job_key(fn: Callable, inputs: Any = (), params: Mapping[str, Any] | None = None) -> str:
    """The content hash a job's result is stored under (64 hex digits)."""
    name, source = function_identity(fn)
    h = hashlib.sha256()
    _feed(h, ("spidercache-memo-v2", name, source))
    _feed(h, inputs)
    _feed(h, dict(params or {}))
    return h.hexdigest()


def to_jsonable(value: Any) -> Any:
    """A JSON-friendly copy (arrays and tensors become lists) for listings and HTTP."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if type(value).__module__.startswith("torch") and hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"bytes": len(value)}
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


# -------------------------------------------------------------------- cache
@dataclass
class MemoOutcome:
    result: Any
    key: str
    hit: bool
    seconds: float


class ResultCache:
    """Results of jobs in one store; ``run`` is the memoized call."""

    def __init__(self, store) -> None:
        self.store = store
        self.errors = 0  # damaged or mismatched records seen (served as misses)

    @classmethod
    def open(cls, spec: str | None = None) -> ResultCache:
        return cls(open_results_store(spec))

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> ResultCache:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def run(
        self,
        fn: Callable,
        inputs: Any = (),
        params: Mapping[str, Any] | None = None,
        *,
        no_cache: bool = False,
        call: Callable[[], Any] | None = None,
        save_if: Callable[[Any], bool] | None = None,
    ) -> MemoOutcome:
        """Return ``fn(*inputs, **params)`` (or ``call()``), from the store when this exact job ran before.

        ``no_cache`` skips the lookup and does not store the result either;
        ``save_if(result)`` False also keeps a result out (a run that hit faults).
        A store that is down is reported by ``StoreUnavailable`` from the lookup;
        callers that prefer to run anyway can catch it. A store that goes away while the
        job runs costs only the saving: the result comes back with a ``WeightCacheWarning``.
        """
        key = job_key(fn, inputs, params)
        started = time.perf_counter()
        if not no_cache:
            record = self.lookup(key)
            if record is not None:
                return MemoOutcome(record["result"], key, True, time.perf_counter() - started)
        args = inputs if isinstance(inputs, tuple) else (inputs,)
        result = call() if call is not None else fn(*args, **dict(params or {}))
        seconds = time.perf_counter() - started
        if not no_cache and (save_if is None or save_if(result)):
            try:
                self.save(key, fn, result, seconds, params)
            except StoreUnavailable as exc:  # the job's work is done: hand it back all the same
                warnings.warn(f"{exc}; the result is returned, not stored", WeightCacheWarning, stacklevel=2)
        return MemoOutcome(result, key, False, seconds)

    def lookup(self, key: str) -> dict | None:
        """The stored record for ``key`` (with ``result``), or None; damaged records count as errors."""
        raw = self.store.get(_RECORD_PREFIX + key)
        if raw is None:
            return None
        try:
            record = codec.decode(raw)
        except CorruptValue:
            self.errors += 1
            return None
        if not isinstance(record, dict) or record.get("key") != key:
            self.errors += 1
            return None
        return record

    def save(
        self, key: str, fn: Callable, result: Any, seconds: float, params: Mapping[str, Any] | None
    ) -> None:
        name, _ = function_identity(fn)
        record = {
            "key": key,
            "function": name,
            "created": time.time(),
            "seconds": float(seconds),
            "params": to_jsonable(dict(params or {})),
            "result": result,
        }
        try:
            blob = codec.encode(record)
        except (TypeError, ValueError) as exc:
            raise UserError(f"the result of {name} cannot be stored: {exc}") from None
        if not self.store.put(_RECORD_PREFIX + key, blob):
            raise StoreUnavailable(f"the results store refused a {len(blob)}-byte result")
        index = self._index()
        index[key] = [name, record["created"], float(seconds), len(blob)]
        self.store.put(_INDEX_KEY, codec.encode(index))

    def _index(self) -> dict[str, list]:
        raw = self.store.get(_INDEX_KEY)
        if raw is None:
            return {}
        try:
            index = codec.decode(raw)
        except CorruptValue:
            self.errors += 1
            return {}
        return dict(index) if isinstance(index, dict) else {}

    def entries(self) -> list[dict]:
        """One row per stored result still present: key, function, created, seconds, bytes."""
        index = self._index()
        keys = list(index)
        present = self.store.get_many([_RECORD_PREFIX + k for k in keys]) if keys else []
        rows = []
        for key, raw in zip(keys, present):
            if raw is None:
                continue  # evicted from memcached, or purged by another process
            name, created, seconds, nbytes = index[key]
            rows.append(
                {"key": key, "function": name, "created": created, "seconds": seconds, "bytes": nbytes}
            )
        return sorted(rows, key=lambda r: r["created"])

    def purge(self, function: str | None = None) -> int:
        """Delete every result (or those of one function, by full or last name); returns how many."""
        index = self._index()
        doomed = [
            k
            for k, (name, *_rest) in index.items()
            if function is None or name == function or name.rsplit(".", 1)[-1] == function
        ]
        if doomed:
            self.store.delete_many([_RECORD_PREFIX + k for k in doomed])
        for k in doomed:
            del index[k]
        self.store.put(_INDEX_KEY, codec.encode(index))
        return len(doomed)


def memoize(cache: ResultCache, params: Mapping[str, Any] | None = None) -> Callable:
    """Decorator form: ``@memoize(cache)`` makes ``f(*inputs)`` a memoized call returning the result."""

    def wrap(fn: Callable) -> Callable:
        def memoized(*inputs: Any, no_cache: bool = False, **kw: Any) -> Any:
            merged = {**dict(params or {}), **kw}
            return cache.run(fn, tuple(inputs), merged, no_cache=no_cache).result

        memoized.__wrapped__ = fn  # type: ignore[attr-defined]
        memoized.__name__ = getattr(fn, "__name__", "memoized")
        return memoized

    return wrap


def result_json(record: dict) -> str:
    return json.dumps(to_jsonable(record), sort_keys=True)


__all__ = [
    "ResultCache",
    "MemoOutcome",
    "memoize",
    "job_key",
    "function_identity",
    "open_results_store",
    "default_results_path",
    "to_jsonable",
    "result_json",
]
