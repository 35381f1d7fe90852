"""What the webhook plugin reads from the configuration: ``settings.webhook`` and destinations.

Destinations are the rule files' ``webhooks:`` section (schema in the core), stored by ``apply``
in the ``webhooks`` table as written: secret references (``${env:...}``) stay references there
and are resolved only when an attempt is made (:func:`resolve_destination`).
"""

from __future__ import annotations

import base64
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from taskengine_core.durations import parse_duration

from .settings_schema import DEFAULT_CONCURRENCY, SETTINGS_SCHEMA  # noqa: F401 - importable from here

log = logging.getLogger("taskengine.webhook")
DEFAULT_TIMEOUT = 15.0
DEFAULT_RETRIES = 5
DEFAULT_BACKOFF = 5.0
DEFAULT_MAX_BACKOFF = 10 * 3600.0
USER_AGENT = "taskengine-webhook/1"
REDACTED = "********"
# Headers the engine sets itself; a destination's or an action's ``headers`` cannot replace them.
RESERVED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection",
                              "content-type", "webhook-id", "webhook-timestamp",
                              "webhook-signature"})


@dataclass(frozen=True)
class WebhookSettings:
    deny: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()
    concurrency: int = DEFAULT_CONCURRENCY
    backoff: float = DEFAULT_BACKOFF
    max_backoff: float = DEFAULT_MAX_BACKOFF
    processes: int = 0  # dispatchers in processes of their own (0: in the engine's process)

    @classmethod
    def from_spec(cls, spec: dict | None) -> "WebhookSettings":
        spec = spec or {}
        return cls(deny=tuple(spec.get("deny") or ()), allow=tuple(spec.get("allow") or ()),
                   concurrency=int(spec.get("concurrency", DEFAULT_CONCURRENCY)),
                   backoff=parse_duration(spec.get("backoff", DEFAULT_BACKOFF), clamp=True),
                   max_backoff=parse_duration(spec.get("max_backoff", DEFAULT_MAX_BACKOFF), clamp=True),
                   processes=int(spec.get("processes", 0)))


@dataclass(frozen=True)
class Destination:
    """One ``webhooks:`` entry as stored (references unresolved)."""

    name: str
    enabled: bool
    spec: dict

    @classmethod
    def from_row(cls, name: str, spec: str | dict, enabled: Any) -> "Destination":
        return cls(name, bool(enabled), json.loads(spec) if isinstance(spec, str) else spec)

    @property
    def timeout(self) -> float:
        value = self.spec.get("timeout")
        return parse_duration(value, clamp=True) if value is not None else DEFAULT_TIMEOUT

    @property
    def retries(self) -> int:
        return int(self.spec.get("retries", DEFAULT_RETRIES))

    @property
    def method(self) -> str:
        return self.spec.get("method", "POST")

    @property
    def insecure(self) -> bool:
        """TLS verification is off only when ``allow_insecure: true`` is spelled out."""
        return bool(self.spec.get("allow_insecure", False))

    @property
    def ignored_verify_off(self) -> bool:
        """``verify_tls: false`` without ``allow_insecure: true``: verification stays on."""
        return self.spec.get("verify_tls") is False and not self.insecure


@dataclass
class Resolved:
    """A destination with its references resolved, for one attempt; never stored."""

    url: str
    method: str
    headers: dict[str, str]  # the destination's custom headers
    auth_headers: dict[str, str]
    signing_secrets: list[str]
    sensitive: list[str] = field(default_factory=list)  # values to scrub from what is stored


def resolve_destination(dest: Destination, resolve: Callable[[Any], Any]) -> Resolved:
    """Resolve references in the destination (raises ``SecretError``) and build its auth and
    custom headers. ``sensitive`` lists every value that must never be stored or shown."""
    spec = dest.spec
    url = resolve(spec["url"])
    headers: dict[str, str] = {}
    sensitive: list[str] = []
    for key, value in (spec.get("headers") or {}).items():
        if key.lower() in RESERVED_HEADERS:
            continue
        text = resolve(value)
        headers[key] = text
        if text != value:  # it held a reference: whatever it resolved to is a secret
            sensitive.append(text)
    auth_headers: dict[str, str] = {}
    auth = spec.get("auth") or {"type": "none"}
    kind = auth.get("type", "none")
    if kind == "basic":
        user, password = resolve(auth["username"]), resolve(auth["password"])
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        auth_headers["Authorization"] = f"Basic {token}"
        sensitive += [password, token]
    elif kind == "bearer":
        token = resolve(auth["token"])
        auth_headers["Authorization"] = f"Bearer {token}"
        sensitive.append(token)
    elif kind == "apikey":
        key = resolve(auth["key"])
        auth_headers[auth["header"]] = key
        sensitive.append(key)
    secrets = []
    if spec.get("secret"):
        raw = resolve(spec["secret"])
        secrets = raw.split()
        sensitive += secrets + [s.partition("whsec_")[2] for s in secrets if s.startswith("whsec_")]
    if url != spec["url"]:
        sensitive.append(url)
    sensitive += list(auth_headers.values())
    return Resolved(url, dest.method, headers, auth_headers, secrets,
                    [s for s in sensitive if s and len(s) >= 3])


def scrubber(sensitive: list[str], redact: Callable[[Any], Any]) -> Callable[[str | None], str | None]:
    """A function removing ``sensitive`` values (longest first) and anything the engine's
    redactor knows from a text."""
    values = sorted(set(sensitive), key=len, reverse=True)

    def scrub(text: str | None) -> str | None:
        if text is None:
            return None
        for value in values:
            if value in text:
                text = text.replace(value, "********")
        return redact(text)

    return scrub


@dataclass
class Prepared:
    """Everything an attempt needs from its destination, resolved (kept in memory only)."""

    resolved: Resolved
    scrub: Callable[[str | None], str | None]
    keys: list[bytes]
    url: Any  # yarl.URL
    expires: float
    headers: dict[str, str] = field(default_factory=dict)  # the fixed ones, as sent
    header_record: dict[str, str] = field(default_factory=dict)  # the same, as logged
    # the same with the auth headers (as sent / as logged: redacted), for a message that adds
    # no headers of its own (most): copied per attempt instead of merged
    with_auth: dict[str, str] = field(default_factory=dict)
    with_auth_record: dict[str, str] = field(default_factory=dict)
    macs: list = field(default_factory=list)  # the keys' HMACs, keyed once (signing.keyed)
    timeout: float = DEFAULT_TIMEOUT  # the destination's, parsed once
    client_timeout: Any = None  # the same as aiohttp's total timeout for a request
    verify_tls: bool = True


class Preparer:
    """Resolves destinations for attempts, keeping the result for ``ttl`` seconds so a burst
    of deliveries does not re-read every reference (a changed secret is picked up after at
    most ``ttl``). Resolution and signing-secret errors are raised, never cached."""

    def __init__(self, resolve: Callable[[Any], Any], redact: Callable[[Any], Any],
                 ttl: float = 1.0) -> None:
        self.resolve, self.redact, self.ttl = resolve, redact, ttl
        self._cache: dict[str, tuple[dict, Prepared]] = {}

    def __call__(self, dest: Destination) -> Prepared:
        now = time.monotonic()
        hit = self._cache.get(dest.name)
        if hit is not None and hit[0] is dest.spec and hit[1].expires > now:
            return hit[1]
        from aiohttp import ClientTimeout
        from yarl import URL

        from .signing import keyed, signing_keys

        if dest.ignored_verify_off and hit is None:
            log.warning("webhook %s: verify_tls: false is ignored without allow_insecure: true; "
                        "TLS certificates are still verified", dest.name)
        resolved = resolve_destination(dest, self.resolve)
        scrub = scrubber(resolved.sensitive, self.redact)
        prepared = Prepared(resolved, scrub, signing_keys(resolved.signing_secrets),
                            URL(resolved.url), now + self.ttl)
        prepared.headers = {"User-Agent": USER_AGENT, **resolved.headers}
        prepared.header_record = {k: scrub(v) for k, v in prepared.headers.items()}
        prepared.with_auth = {**prepared.headers, **resolved.auth_headers}
        prepared.with_auth_record = {**prepared.header_record,
                                     **{k: REDACTED for k in resolved.auth_headers}}
        prepared.timeout, prepared.verify_tls = dest.timeout, not dest.insecure
        prepared.client_timeout = ClientTimeout(total=dest.timeout)
        prepared.macs = keyed(prepared.keys)
        self._cache[dest.name] = (dest.spec, prepared)
        return prepared
