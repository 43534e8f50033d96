"""memcached store over several servers (pymemcache ``HashClient``).

Every key has one *entry* item, ``<prefix>:i:<int>`` (or ``:s:<str>``):

* ``b"V" + value`` when the value fits one item (the usual case), or
* ``b"M" + manifest`` (nonce, chunk count, total length, xxh3_64 of the value)
  when it does not: the value is cut into chunks stored under
  ``<entry key>:<nonce>:<i>``, which the ring spreads over the servers.

Chunks are written first and the manifest last, and every rewrite uses a fresh
nonce, so a reader sees either the old complete value, the new complete value,
or a miss -- never half of one. A read that finds a chunk missing (memcached
evicted it, a server lost it) or a length / checksum that does not match is a
miss. Chunks of an overwritten or deleted value are left for memcached's own LRU.
``append_everywhere`` / ``read_everywhere`` keep a small list on every server
(the weight cache's node list), so that it survives a server.

A server that does not answer raises ``StoreUnavailable``: ``HashClient`` is
configured with ``ignore_exc=False`` and an unbounded retry count with no
retry delay, so a dead server is retried (and fails loudly) on every call
instead of being silently dropped from the ring, which would turn its keys
into quiet misses on the other servers and hide the outage.
"""

from __future__ import annotations

import os
import re
import struct
from typing import Sequence

import numpy as np
import xxhash
from pymemcache.client.hash import HashClient
from pymemcache.exceptions import MemcacheError, MemcacheServerError

from ...errors import StoreUnavailable, UserError
from .base import Key, Store, Value, as_key_list, check_batch, key_text

DEFAULT_ITEM_LIMIT = 1024 * 1024  # memcached's default -I
_ITEM_OVERHEAD = 1024  # room for the key, the item header and CAS in one slab item
_MANIFEST = struct.Struct("<QIQQ")  # nonce, n_chunks, total length, xxh3_64
_INLINE = b"V"
_CHUNKED = b"M"
_SAFE_KEY = re.compile(r"^[!-~]{1,180}$")  # printable ascii, no spaces, short enough


class MemcachedStore(Store):
    name = "memcached"

    def __init__(
        self,
        servers: Sequence[tuple[str, int]] = (("127.0.0.1", 11211),),
        *,
        prefix: str = "sc",
        item_limit: int = DEFAULT_ITEM_LIMIT,
        connect_timeout: float = 1.0,
        timeout: float = 2.0,
        ttl: int = 0,
    ) -> None:
        self.servers = [(str(h), int(p)) for h, p in servers]
        if not self.servers:
            raise UserError("memcached store needs at least one server")
        if not _SAFE_KEY.match(prefix) or len(prefix) > 40:
            raise UserError(f"memcached prefix {prefix!r} must be short printable ascii without spaces")
        if item_limit <= 2 * _ITEM_OVERHEAD:
            raise ValueError(f"item_limit {item_limit} is too small")
        self.prefix = prefix
        self.item_limit = int(item_limit)
        self.chunk_size = self.item_limit - _ITEM_OVERHEAD
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.ttl = int(ttl)
        self._client = self._connect()

    @property
    def address(self) -> str:
        return ",".join(f"{h}:{p}" for h, p in self.servers)

    def _connect(self) -> HashClient:
        client = HashClient(
            self.servers,
            connect_timeout=self.connect_timeout,
            timeout=self.timeout,
            ignore_exc=False,
            retry_attempts=2**31,  # never drop a server from the ring ...
            retry_timeout=-1,  # ... and retry it on every call (so it raises)
            dead_timeout=0,
            use_pooling=True,  # one connection per thread: Client is not thread-safe
            default_noreply=False,
            # TCP_NODELAY: after a noreply command (delete_many) the server sends nothing back, so
            # Nagle held the next request until the delayed ACK: a 40 ms stall per WeightCache.put
            no_delay=True,
        )
        for name, server_client in client.clients.items():
            try:
                server_client.version()
            except (MemcacheError, OSError) as exc:
                client.close()
                raise StoreUnavailable(f"memcached at {name} does not answer: {_one_line(exc)}") from exc
        return client

    def _entry_key(self, key: Key) -> str:
        text = key_text(key)
        if not _SAFE_KEY.match(text):
            # memcached keys are short ascii without spaces; hash anything else (128 bits).
            text = "h:" + xxhash.xxh3_128_hexdigest(text.encode("utf-8"))
        return f"{self.prefix}:{text}"

    def _unavailable(self, exc: BaseException, what: str) -> StoreUnavailable:
        return StoreUnavailable(f"memcached at {self.address} failed during {what}: {_one_line(exc)}")

    # ----------------------------------------------------------- protocol
    def get_many(self, keys) -> list[Value | None]:
        keys = as_key_list(keys)
        if not keys:
            return []
        entry_keys = [self._entry_key(k) for k in keys]
        try:
            found = self._client.get_many(list(dict.fromkeys(entry_keys)))
        except (MemcacheError, OSError) as exc:
            raise self._unavailable(exc, "get_many") from exc
        out: list[Value | None] = [None] * len(keys)
        manifests: dict[int, tuple[str, int, int, int, int]] = {}
        for i, ek in enumerate(entry_keys):
            item = found.get(ek)
            if not item:
                continue
            tag = item[:1]
            if tag == _INLINE:
                out[i] = memoryview(item)[1:]
            elif tag == _CHUNKED and len(item) == 1 + _MANIFEST.size:
                nonce, n_chunks, total, checksum = _MANIFEST.unpack_from(item, 1)
                manifests[i] = (ek, nonce, n_chunks, total, checksum)
        if manifests:
            chunk_keys = [
                _chunk_key(ek, nonce, j) for ek, nonce, n, _, _ in manifests.values() for j in range(n)
            ]
            try:
                chunks = self._client.get_many(chunk_keys)
            except (MemcacheError, OSError) as exc:
                raise self._unavailable(exc, "get_many") from exc
            for i, (ek, nonce, n, total, checksum) in manifests.items():
                parts = [chunks.get(_chunk_key(ek, nonce, j)) for j in range(n)]
                if any(p is None for p in parts):
                    continue  # a chunk is gone: a miss, never half a value
                value = b"".join(parts)
                if len(value) == total and xxhash.xxh3_64_intdigest(value) == checksum:
                    out[i] = value
        return out

    def put_many(self, keys, values: Sequence[Value]) -> np.ndarray:
        keys = as_key_list(keys)
        check_batch(keys, values)
        stored = np.zeros(len(keys), np.bool_)
        if not keys:
            return stored
        entries: dict[str, bytes] = {}
        entry_index: dict[str, int] = {}
        chunk_items: dict[str, bytes] = {}
        chunk_owner: dict[str, str] = {}
        for i, (k, v) in enumerate(zip(keys, values)):
            ek = self._entry_key(k)
            mv = memoryview(v).cast("B")
            entry_index[ek] = i
            if len(mv) + 1 <= self.chunk_size:
                entries[ek] = b"".join((_INLINE, mv))  # one copy
                continue
            nonce = int.from_bytes(os.urandom(8), "little")
            n = -(-len(mv) // self.chunk_size)
            for j in range(n):
                ck = _chunk_key(ek, nonce, j)
                chunk_items[ck] = mv[j * self.chunk_size : (j + 1) * self.chunk_size].tobytes()
                chunk_owner[ck] = ek
            entries[ek] = _CHUNKED + _MANIFEST.pack(nonce, n, len(mv), xxhash.xxh3_64_intdigest(mv))
        try:
            if chunk_items:
                # Chunks first: a manifest is only written once all its chunks are in.
                for ck in self._client.set_many(chunk_items, expire=self.ttl, noreply=False):
                    entries.pop(chunk_owner[_as_str(ck)], None)
            failed = set(_as_str(k) for k in self._client.set_many(entries, expire=self.ttl, noreply=False))
        except MemcacheServerError:
            return stored  # the server refused (out of memory, too large): nothing claimed stored
        except (MemcacheError, OSError) as exc:
            raise self._unavailable(exc, "put_many") from exc
        for ek in entries:
            if ek not in failed:
                stored[entry_index[ek]] = True
        return stored

    def delete_many(self, keys) -> None:
        # Entry items only: a chunked value's chunks become unreachable with its manifest and are
        # left to memcached's LRU, as when a value is overwritten (no read-back to find them).
        keys = as_key_list(keys)
        if not keys:
            return
        try:
            self._client.delete_many(list(dict.fromkeys(self._entry_key(k) for k in keys)), noreply=True)
        except (MemcacheError, OSError) as exc:
            raise self._unavailable(exc, "delete_many") from exc

    # ------------------------------------------------ replicated lists
    def append_everywhere(self, key: Key, data: bytes) -> int:
        """Append ``data`` to ``key``'s value on every server (memcached's atomic append).

        A list kept this way survives the loss of any server but one. Returns how
        many servers took it; raises ``StoreUnavailable`` only when none did.
        """
        ek = self._entry_key(key)
        took = 0
        for client in list(self._client.clients.values()):
            try:
                if not client.append(ek, data, noreply=False):
                    client.add(ek, _INLINE, noreply=False)  # (a concurrent add wins; append then works)
                    client.append(ek, data, noreply=False)
                took += 1
            except (MemcacheError, OSError):
                continue
        if not took:
            raise StoreUnavailable(f"no memcached server of {self.address} answers")
        return took

    def read_everywhere(self, key: Key) -> list[bytes]:
        """``key``'s value on each server that answers and holds it (see ``append_everywhere``)."""
        ek = self._entry_key(key)
        out, answered = [], 0
        for client in list(self._client.clients.values()):
            try:
                item = client.get(ek)
            except (MemcacheError, OSError):
                continue
            answered += 1
            if item and item[:1] == _INLINE:
                out.append(bytes(item[1:]))
        if not answered:
            raise StoreUnavailable(f"no memcached server of {self.address} answers")
        return out

    def __contains__(self, key: Key) -> bool:
        return self.get_many([key])[0] is not None

    def close(self) -> None:
        try:
            self._client.close()
        except (MemcacheError, OSError):
            pass

    def __getstate__(self) -> dict:
        return {
            k: getattr(self, k)
            for k in ("servers", "prefix", "item_limit", "connect_timeout", "timeout", "ttl")
        }

    def __setstate__(self, state: dict) -> None:
        servers = state.pop("servers")
        MemcachedStore.__init__(self, servers, **state)

    def __repr__(self) -> str:
        return f"MemcachedStore({self.address}, prefix={self.prefix!r})"


def _chunk_key(entry_key: str, nonce: int, j: int) -> str:
    return f"{entry_key}:{nonce:016x}:{j}"


def _as_str(key) -> str:
    return key.decode("ascii") if isinstance(key, bytes) else key


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
