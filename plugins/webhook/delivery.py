"""One attempt to deliver one message, and what follows from its result.

An attempt resolves the destination's references, signs the body, checks a literal IP against
the egress policy, sends the request (redirects never followed, bounded time), reads at most
:data:`EXCERPT_BYTES` of the response, and returns an :class:`Attempt` whose texts are already
scrubbed of every secret it used. :func:`decide` turns it into the delivery's next state.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import aiohttp

from taskengine_core.errors import SecretError

from .config import REDACTED, RESERVED_HEADERS, Destination, Preparer, WebhookSettings
from .egress import CONNECTED, EgressPolicy, EgressRefused
from .retry import RETRY_AFTER_STATUSES, backoff, parse_retry_after
from .signing import SigningError, signature_headers

EXCERPT_BYTES = 2048
EXCERPT_WAIT = 2.0  # seconds the excerpt of a response body may take once the status is in
_ids = random.Random()  # request ids need to be unique, not secret (os.urandom costs a syscall)


@dataclass(slots=True)
class Message:
    """A claimed delivery row."""

    id: str
    webhook: str
    type: str
    body: str
    content_type: str
    headers: dict
    attempts: int  # made before this claim
    max_attempts: int
    task: str | None = None
    run_id: str | None = None
    event_id: str | None = None


@dataclass(slots=True)
class Attempt:
    message: Message
    number: int
    request_id: str
    started_at: datetime
    duration: float = 0.0
    status_code: int | None = None
    address: str | None = None
    error: str | None = None
    excerpt: str | None = None
    request_headers: dict = field(default_factory=dict)
    retry_after: float | None = None
    permanent: bool = False  # retrying cannot help: 410, egress refused, bad secret
    gone: bool = False  # 410: the destination is to be disabled

    @property
    def ok(self) -> bool:
        return self.error is None and self.status_code is not None and 200 <= self.status_code < 300


async def attempt(session: aiohttp.ClientSession, dest: Destination | None, message: Message, *,
                  policy: EgressPolicy, prepare: Preparer) -> Attempt:
    """Make one attempt. Never raises (except cancellation): every failure is in the result."""
    result = Attempt(message, message.attempts + 1, f"req_{_ids.getrandbits(64):016x}",
                     datetime.now(timezone.utc))
    start = time.monotonic()
    scrub = prepare.redact  # until the destination's own secrets are known
    try:
        if dest is None:
            result.permanent = True
            raise _Fail(f"the webhook {message.webhook!r} no longer exists")
        prepared = prepare(dest)
        resolved, scrub, url = prepared.resolved, prepared.scrub, prepared.url
        policy.check_host(url.host or "")
        body = message.body.encode("utf-8")
        extra = message.headers
        if extra:
            extra = {k: v for k, v in extra.items() if k.lower() not in RESERVED_HEADERS}
        if extra:
            headers = {**prepared.headers, **extra}
            record = {**prepared.header_record, **extra}
            for key, value in resolved.auth_headers.items():
                headers[key], record[key] = value, REDACTED
        else:  # the same dictionaries, merged once per destination
            headers, record = prepared.with_auth.copy(), prepared.with_auth_record.copy()
        dynamic = {"Content-Type": message.content_type}
        if "X-Request-Id" not in headers:
            dynamic["X-Request-Id"] = result.request_id
        dynamic.update(signature_headers(prepared.macs, message.id, int(time.time()), body))
        headers.update(dynamic)
        record.update(dynamic)
        result.request_headers = record
        CONNECTED.set(None)
        async with session.request(resolved.method, url, data=body, headers=headers,
                                   allow_redirects=False, ssl=prepared.verify_tls,
                                   timeout=prepared.client_timeout) as resp:
            result.status_code = resp.status
            result.address = CONNECTED.get()
            raw = await _read_bounded(resp)
            result.excerpt = scrub(raw.decode("utf-8", "replace")) if raw else None
            if resp.status in RETRY_AFTER_STATUSES:
                result.retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            result.error = _status_error(resp, dest.name, scrub)
            result.gone = resp.status == 410
            result.permanent = result.gone
    except _Fail as exc:
        result.error = str(exc)
    except SigningError as exc:
        result.error, result.permanent = f"cannot sign: {exc}", True
    except SecretError as exc:  # configuration, not the receiver: retrying cannot help
        result.error = scrub(f"{exc}; not retried: fix it, then 'taskengine webhooks redeliver {message.id}'")
        result.permanent = True
    except EgressRefused as exc:
        result.error, result.permanent = str(exc), True
    except asyncio.TimeoutError:
        result.error = f"no response within {dest.timeout:g}s (timeout)"
    except aiohttp.ClientError as exc:
        refused = _egress_cause(exc)
        if refused is not None:
            result.error, result.permanent = str(refused), True
        else:
            result.error = scrub(f"{type(exc).__name__}: {exc}")
    except (OSError, ValueError) as exc:
        result.error = scrub(f"{type(exc).__name__}: {exc}")
    result.duration = time.monotonic() - start
    # what a receiver sent as text either backend can store, or the attempt is never recorded:
    # a NUL (PostgreSQL's text cannot hold it) and bytes that are not UTF-8 (aiohttp keeps those
    # of a reason phrase or header as lone surrogates, which neither SQLite nor PostgreSQL can
    # encode) become U+FFFD, as undecodable bytes of the body do
    result.excerpt, result.error = _storable(result.excerpt), _storable(result.error)
    return result


def _storable(text: str | None) -> str | None:
    if not text:
        return text
    if not text.isascii():
        try:
            text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        except UnicodeEncodeError:  # a surrogate that stands for no byte
            text = text.encode("utf-8", "replace").decode("utf-8")
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


class _Fail(Exception):
    pass


def _status_error(resp: aiohttp.ClientResponse, name: str, scrub) -> str | None:
    status = resp.status
    if 200 <= status < 300:
        return None
    text = f"HTTP {status} {resp.reason or ''}".rstrip()
    if 300 <= status < 400:
        where = resp.headers.get("Location")
        return scrub(f"{text}: redirect{' to ' + where if where else ''} not followed; "
                     "set the webhook's url to the final address")
    if status == 410:
        return f"{text}: the destination is gone, so it was disabled; 'taskengine webhooks " \
               f"enable {name}' turns it back on"
    return text


async def _read_bounded(resp: aiohttp.ClientResponse) -> bytes:
    """At most :data:`EXCERPT_BYTES` of the body, as much as arrives within
    :data:`EXCERPT_WAIT`. The status decides the attempt: a 2xx followed by a slow, endless or
    broken body is still a delivery, so the excerpt read never turns it into a failure."""
    data = b""
    try:
        content = resp.content
        data = content.read_nowait(EXCERPT_BYTES)  # what came with the head: often all of it
        if len(data) >= EXCERPT_BYTES or content.at_eof():
            return data
        async with asyncio.timeout(EXCERPT_WAIT):
            while len(data) < EXCERPT_BYTES:
                chunk = await resp.content.read(EXCERPT_BYTES - len(data))
                if not chunk:
                    break
                data += chunk
    except (asyncio.TimeoutError, aiohttp.ClientError):
        pass  # keep what arrived; the connection is closed, not reused
    return data


def _egress_cause(exc: BaseException) -> EgressRefused | None:
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, EgressRefused):
            return exc
        inner = getattr(exc, "os_error", None)
        if isinstance(inner, EgressRefused):
            return inner
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


@dataclass(frozen=True)
class Decision:
    status: str  # delivered | pending | failed | exhausted
    next_attempt_at: datetime | None = None


_DELIVERED, _FAILED = Decision("delivered"), Decision("failed")  # frozen: shared


def decide(result: Attempt, settings: WebhookSettings, retries: int, now: datetime,
           rng: random.Random | None = None) -> Decision:
    """The delivery's state after ``result``. ``retries`` is the destination's (for the
    position in the backoff schedule after a redelivery)."""
    if result.ok:
        return _DELIVERED
    if result.permanent:
        return _FAILED
    message = result.message
    if result.number >= message.max_attempts:
        return Decision("exhausted")
    if result.retry_after is not None:
        wait = result.retry_after
    else:
        first = max(0, message.max_attempts - (retries + 1))  # attempts before this round
        wait = backoff(max(1, result.number - first), settings.backoff, settings.max_backoff, rng)
    return Decision("pending", now + timedelta(seconds=wait))
