"""Identifiers for events and runs: short, random, safe to type."""

from __future__ import annotations

import os
import random

# Ids must be unique, not unguessable: a generator seeded from os.urandom avoids a system call
# per id (the ingress makes one per request). A forked child reseeds, or it would repeat ours.
_rng = random.Random(os.urandom(16))
os.register_at_fork(after_in_child=lambda: _rng.seed(os.urandom(16)))


def new_id() -> str:
    """16 hex characters (64 random bits)."""
    return f"{_rng.getrandbits(64):016x}"
