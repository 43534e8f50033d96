"""All sessions of one server: the server-wide budget, the session cap, persistence.

With ``persist`` the session table is saved in ``sessions.json`` in the spill
directory (atomically: a crash leaves the old or the new table) and a restarted
server finds its sessions there. A server started without ``persist`` removes
the table and the spill files it finds: they belong to sessions that are gone,
and a later ``--persist`` start must not bring back an old, empty session.
"""

from __future__ import annotations

import json
import os
import secrets
import threading

from .session_disk import remove_tree
from .sessions import (
    SESSION_OVERHEAD,
    RequestError,
    ServerConfig,
    ServerFull,
    Session,
    SessionNotFound,
)

TABLE_NAME = "sessions.json"


class SessionManager:
    """All sessions of one server, and the server-wide memory budget."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.sessions: dict[int, Session] = {}
        self.lock = threading.Lock()
        if config.persist and config.spill_dir:
            self._load()
        elif config.spill_dir and os.path.isdir(config.spill_dir):
            # a table and spill files of a server that did not persist belong to sessions that are gone
            for name in os.listdir(config.spill_dir):
                if name.startswith("session-") and name[8:].isdigit():
                    remove_tree(os.path.join(config.spill_dir, name))
                elif name in (TABLE_NAME, TABLE_NAME + ".tmp"):
                    os.unlink(os.path.join(config.spill_dir, name))

    # ------------------------------------------------------------ budget
    def used_bytes(self) -> int:
        """Values, indexes, policy state, and a fixed cost per session."""
        sessions = list(self.sessions.values())
        return sum(s.used_bytes for s in sessions) + SESSION_OVERHEAD * len(sessions)

    def room(self, session: Session) -> int:
        """Bytes ``session`` may still take: its own budget and the server's."""
        return max(0, min(session.budget - session.used_bytes, self.config.data_bytes - self.used_bytes()))

    # ---------------------------------------------------------- sessions
    def new(self, memory_bytes: int = 0, spill: bool = False) -> Session:
        if memory_bytes < 0:
            raise RequestError("memory must be positive")
        if spill and not self.config.spill_dir:
            raise RequestError("this server was started with --no-spill; a session cannot spill")
        budget = min(memory_bytes or self.config.data_bytes, self.config.data_bytes)
        with self.lock:
            if len(self.sessions) >= self.config.max_sessions:
                raise ServerFull(
                    f"the server holds its maximum of {self.config.max_sessions} sessions "
                    "(--max-sessions): destroy one first"
                )
            if self.config.data_bytes - self.used_bytes() < 2 * SESSION_OVERHEAD:
                raise ServerFull("the server's memory budget is used up: no room for another session")
            while True:
                sid = secrets.randbits(32)
                if sid and sid not in self.sessions:
                    break
            session = Session(sid, budget, spill, self.config, self)
            self.sessions[sid] = session
        self.save()
        return session

    def get(self, session_id: int) -> Session:
        session = self.sessions.get(int(session_id))
        if session is None:
            raise SessionNotFound(int(session_id))
        return session

    def destroy(self, session_id: int) -> None:
        with self.lock:
            session = self.sessions.pop(int(session_id), None)
        if session is None:
            raise SessionNotFound(int(session_id))
        session.close(destroyed=True)
        self.save()

    def heartbeat(self) -> None:
        for s in list(self.sessions.values()):
            s.arena.heartbeat()

    def close(self) -> None:
        """Server shutdown: drop shared memory; persisted data stays on disk."""
        for s in list(self.sessions.values()):
            s.close(destroyed=False)
        self.sessions.clear()

    # ----------------------------------------------------------- persist
    @property
    def table_path(self) -> str | None:
        if not (self.config.persist and self.config.spill_dir):
            return None
        return os.path.join(self.config.spill_dir, TABLE_NAME)

    def save(self) -> None:
        path = self.table_path
        if path is None:
            return
        table = {
            str(s.id): dict(budget=s.budget, spill=s.spill, pipeline=s.pipeline, sealed_items=s.sealed_items)
            for s in list(self.sessions.values())
        }
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(table, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic: a crash leaves the old or the new table

    def _load(self) -> None:
        path = self.table_path
        if path is None or not os.path.exists(path):
            return
        try:
            with open(path) as f:
                table = json.load(f)
        except (OSError, ValueError):
            return
        for sid, row in table.items():
            session = Session(int(sid), int(row["budget"]), bool(row["spill"]), self.config, self)
            session.pipeline = row.get("pipeline")
            session.sealed_items = int(row.get("sealed_items", -1))
            self.sessions[int(sid)] = session  # before reloading: the server-wide budget counts it
            session.reload_from_disk()
