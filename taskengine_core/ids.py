"""Identifiers for events and runs: short, random, safe to type."""

from __future__ import annotations

import secrets


def new_id() -> str:
    """16 hex characters (64 random bits)."""
    return secrets.token_hex(8)
