"""What every source reports: the pending updates, and the event data made from them."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Pending:
    """One pending update: ``installed`` is None for a package the update would add;
    ``size`` is the download size in bytes, None where the source does not say."""

    name: str
    installed: str | None
    candidate: str
    size: int | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def as_list(pending: list[Pending]) -> list[dict]:
    return [p.as_dict() for p in pending]


def fingerprint(pending: list[Pending]) -> list[list[str]]:
    """What makes two pending sets the same: names and candidate versions (sizes may vary)."""
    return sorted([p.name, p.candidate] for p in pending)


def scope_key(source: str, identity: dict) -> str:
    """A state key per source and configuration: two tasks watching different repositories
    or environments keep separate last-seen sets."""
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    return f"pending:{source}:{digest}"
