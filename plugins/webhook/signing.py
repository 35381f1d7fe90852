"""Standard Webhooks signatures (https://www.standardwebhooks.com/).

For a destination with a ``secret``, every attempt carries:

* ``webhook-id``: the delivery id (``msg_...``), the same for every retry and redelivery, so a
  receiver can de-duplicate;
* ``webhook-timestamp``: Unix seconds, fresh for each attempt;
* ``webhook-signature``: ``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``, keyed with the
  base64-decoded part of the secret after ``whsec_``.

Rotation: the value a destination's ``secret`` reference resolves to may hold two secrets
separated by a space (``WEBHOOK_SECRET="whsec_new... whsec_old..."``); each attempt is then
signed with both and the header lists both signatures, space-separated, as the specification
allows, so receivers verify with either while they switch over.
"""

from __future__ import annotations

import base64
import binascii
import hmac

PREFIX = "whsec_"
MAX_SECRETS = 2


class SigningError(ValueError):
    """The signing secret is malformed. The message never contains the secret."""


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret (the prefix is optional, as in the
    reference libraries)."""
    text = secret[len(PREFIX):] if secret.startswith(PREFIX) else secret
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise SigningError("the signing secret is not whsec_ followed by base64") from None
    if not key:
        raise SigningError("the signing secret is empty")
    return key


def signing_keys(secrets: list[str]) -> list[bytes]:
    if len(secrets) > MAX_SECRETS:
        raise SigningError(f"at most {MAX_SECRETS} signing secrets (during a rotation), "
                           f"got {len(secrets)}")
    return [secret_key(s) for s in secrets]


def keyed(keys: list[bytes]) -> list[hmac.HMAC]:
    """Each key's HMAC-SHA256 with the key already mixed in, for :func:`sign` to copy per
    message instead of keying it again (kept in memory only, like the keys)."""
    return [hmac.new(key, digestmod="sha256") for key in keys]


def _signature(key: bytes | hmac.HMAC, signed: bytes) -> str:
    # Not hmac.digest(): its one-shot C function lets go of the GIL for every message, however
    # short, and the dispatcher's thread then waits for it behind the engine's threads. An HMAC
    # object's update lets go only for 2 KB or more, as hashing does.
    mac = hmac.new(key, digestmod="sha256") if isinstance(key, bytes) else key.copy()
    mac.update(signed)
    return "v1," + binascii.b2a_base64(mac.digest(), newline=False).decode("ascii")


def sign(keys: list[bytes] | list[hmac.HMAC], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value: one ``v1,<sig>`` per key, space-separated.
    ``keys``: the secrets' keys (:func:`signing_keys`), or the same :func:`keyed`."""
    signed = b"%s.%d.%s" % (msg_id.encode(), timestamp, body)
    if len(keys) == 1:  # no rotation under way: the usual case
        return _signature(keys[0], signed)
    return " ".join(_signature(key, signed) for key in keys)


def signature_headers(keys: list[bytes] | list[hmac.HMAC], msg_id: str, timestamp: int,
                      body: bytes) -> dict[str, str]:
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(timestamp)}
    if keys:
        headers["webhook-signature"] = sign(keys, msg_id, timestamp, body)
    return headers
