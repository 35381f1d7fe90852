"""Server-level statements the testing kit and the benchmarks need: a new, empty database."""

from __future__ import annotations

import re

import psycopg


def create_database(server_url: str, name: str) -> None:
    """``CREATE DATABASE name`` on the server ``server_url`` points at (a maintenance database
    such as ``postgres``). ``name`` must be a plain identifier."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise ValueError(f"database name {name!r}: use lower-case letters, digits and _")
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
