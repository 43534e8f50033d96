"""``none``: uniform random order, no cache; every request reads storage."""

from __future__ import annotations

from .base import TrainingPolicy


class NoCache(TrainingPolicy):
    name = "none"
