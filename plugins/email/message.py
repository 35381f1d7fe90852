"""Building the message: recipients parsed and checked, headers set, bodies attached.

Nothing here touches the network; ``build_message`` turns rendered parameters into an
``EmailMessage`` and the envelope recipients (to + cc + bcc, de-duplicated).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formataddr, formatdate, parseaddr
from typing import Any

from taskengine_core.errors import ActionError

_ADDRESS = re.compile(r"[^@\s]+@[^@\s]+\Z")
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
# Headers the action sets itself; a task's ``headers`` may not replace them.
RESERVED_HEADERS = frozenset({
    "from", "sender", "to", "cc", "bcc", "reply-to", "subject", "date", "message-id",
    "mime-version", "content-type", "content-transfer-encoding", "return-path",
})


@dataclass(frozen=True)
class Mailbox:
    """One recipient: what the header shows and the bare address the envelope uses."""

    name: str
    address: str

    def header(self) -> str:
        return formataddr((self.name, self.address)) if self.name else self.address


def parse_recipients(value: Any, field: str) -> list[Mailbox]:
    """A list of addresses or a ``;``-separated string (as the reference product writes them)
    as mailboxes; ``Name <a@example.com>`` forms are kept for the headers."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    out: list[Mailbox] = []
    for item in items:
        if not isinstance(item, str):
            raise ActionError(f"email: {field!r} must hold addresses as text, got {item!r}",
                              retryable=False)
        for part in item.split(";"):
            part = part.strip()
            if not part:
                continue
            name, address = parseaddr(part)
            if "\r" in part or "\n" in part or not _ADDRESS.match(address or ""):
                raise ActionError(f"email: {field!r} has an invalid address {part!r}; expected "
                                  "a@example.com or 'Name <a@example.com>'", retryable=False)
            out.append(Mailbox(name.strip(), address))
    return out


def message_id(run_id: str, sender: str) -> str:
    """``<run-id.taskengine@sender-domain>``: the same for every attempt of one run, so a
    receiver (or a person) can tell a retried send from a new message."""
    domain = sender.rpartition("@")[2] or "localhost"
    return f"<{_ID_UNSAFE.sub('-', run_id)}.taskengine@{domain}>"


def build_message(params: dict, *, sender: str, sender_name: str | None,
                  msg_id: str) -> tuple[EmailMessage, list[str]]:
    """The message and its envelope recipients (bare addresses, first occurrence kept)."""
    to = parse_recipients(params.get("to"), "to")
    cc = parse_recipients(params.get("cc"), "cc")
    bcc = parse_recipients(params.get("bcc"), "bcc")
    reply_to = parse_recipients(params.get("reply_to"), "reply_to")
    envelope = _unique([m.address for m in (*to, *cc, *bcc)])
    if not envelope:
        raise ActionError("email: no recipients: give at least one address in to, cc or bcc",
                          retryable=False)

    msg = EmailMessage()
    msg["From"] = Address(display_name=sender_name or "", addr_spec=sender)
    if to:
        msg["To"] = ", ".join(m.header() for m in to)
    if cc:
        msg["Cc"] = ", ".join(m.header() for m in cc)
    if reply_to:
        msg["Reply-To"] = ", ".join(m.header() for m in reply_to)
    # a templated subject may carry line breaks from event data; a header cannot
    msg["Subject"] = " ".join(str(params.get("subject", "")).split())
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = msg_id
    for name, value in (params.get("headers") or {}).items():
        _check_header(name, value)
        msg[name] = value
    msg.set_content(str(params.get("text", "")))
    if params.get("html") is not None:
        msg.add_alternative(str(params["html"]), subtype="html")
    return msg, envelope


def _check_header(name: str, value: Any) -> None:
    if name.lower() in RESERVED_HEADERS:
        raise ActionError(f"email: header {name!r} is set by email.send itself; use the "
                          "matching parameter instead", retryable=False)
    if not isinstance(value, str) or "\r" in value or "\n" in value:
        raise ActionError(f"email: header {name!r} must be one line of text", retryable=False)


def _unique(addresses: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for address in addresses:
        if address.lower() not in seen:
            seen.add(address.lower())
            out.append(address)
    return out

