"""Who may do what in the dashboard: named tokens with roles, sessions, CSRF and Origin checks.

A person signs in once with a token (``POST /ui/login``); the token is exchanged for a random
session id in an HttpOnly, SameSite=Strict cookie that expires. Every state-changing request
also needs the session's CSRF token (form field ``csrf`` or header ``X-CSRF-Token``) and an
``Origin`` naming this server; a refused request changes nothing and says why.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass

ROLES = ("viewer", "operator", "admin")  # each can do what the ones before it can
EMIT_ROLE = "emit"  # may only POST /events; cannot sign in to the dashboard
ALL_ROLES = (*ROLES, EMIT_ROLE)
DEFAULT_SESSION_SECONDS = 8 * 3600
COOKIE = "taskengine_session"
MAX_SESSIONS = 10_000


@dataclass(frozen=True)
class Grant:
    """A named token's right: its name (``ui:NAME`` in the audit log) and role."""

    name: str
    role: str

    def allows(self, role: str) -> bool:
        if self.role == EMIT_ROLE or role not in ROLES:
            return False
        return ROLES.index(self.role) >= ROLES.index(role)

    @property
    def actor(self) -> str:
        return f"ui:{self.name}"


@dataclass
class Session:
    id: str
    grant: Grant
    csrf: str
    expires: float  # time.monotonic()


class Tokens:
    """The configured tokens, compared in constant time."""

    def __init__(self, named: dict[str, tuple[str, str]]) -> None:
        # name -> (secret, role); secrets are kept as bytes only for comparison
        self._named = {name: (secret.encode("utf-8", "surrogateescape"), role)
                       for name, (secret, role) in named.items() if secret}

    def __bool__(self) -> bool:
        return bool(self._named)

    def grant(self, given: str | None) -> Grant | None:
        if not given:
            return None
        given_bytes = given.strip().encode("utf-8", "surrogateescape")
        found = None
        for name, (secret, role) in self._named.items():  # no early exit: timing says nothing
            if hmac.compare_digest(given_bytes, secret):
                found = Grant(name, role)
        return found

    def secrets(self) -> list[str]:
        return [secret.decode("utf-8", "surrogateescape") for secret, _ in self._named.values()]


def tokens_from_settings(access: dict, resolve) -> Tokens:
    """``settings.access.tokens`` (``{name: {token, role}}``), references resolved."""
    named = {}
    for name, spec in ((access or {}).get("tokens") or {}).items():
        named[name] = (str(resolve(spec["token"])), spec.get("role", "viewer"))
    return Tokens(named)


def first_run_tokens() -> tuple[Tokens, str]:
    """No token configured: one admin token made for this start, printed once by ``run``."""
    secret = secrets.token_urlsafe(24)
    return Tokens({"admin": (secret, "admin")}), secret


class Sessions:
    """Signed-in browsers, in memory: a restart signs everybody out."""

    def __init__(self, lifetime: float = DEFAULT_SESSION_SECONDS) -> None:
        self.lifetime = lifetime
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def open(self, grant: Grant) -> Session:
        session = Session(secrets.token_urlsafe(32), grant, secrets.token_urlsafe(32),
                          time.monotonic() + self.lifetime)
        with self._lock:
            if len(self._sessions) >= MAX_SESSIONS:
                self._forget_expired()
                if len(self._sessions) >= MAX_SESSIONS:  # the oldest goes
                    self._sessions.pop(next(iter(self._sessions)))
            self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        with self._lock:
            session = self._sessions.get(session_id)
            if session is not None and session.expires <= time.monotonic():
                del self._sessions[session_id]
                return None
            return session

    def close(self, session_id: str | None) -> None:
        with self._lock:
            self._sessions.pop(session_id or "", None)

    def _forget_expired(self) -> None:
        now = time.monotonic()
        for key in [k for k, s in self._sessions.items() if s.expires <= now]:
            del self._sessions[key]


def csrf_ok(session: Session, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(given.encode("utf-8", "surrogateescape"),
                                               session.csrf.encode())


def origin_problem(origin: str | None, scheme: str, host: str) -> str | None:
    """Why ``origin`` is not this server, or None when it is."""
    if not origin:
        return "the request has no Origin header"
    if origin != f"{scheme}://{host}":
        return f"Origin {origin[:100]!r} is not this server ({scheme}://{host})"
    return None
