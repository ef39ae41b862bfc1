"""Standard Webhooks signatures: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence


def sign(secret: bytes, msg_id: str, timestamp: int, body: str) -> str:
    """One `v1,<signature>` for `secret` (the bytes after base64-decoding `whsec_...`)."""
    content = f"{msg_id}.{timestamp}.{body}".encode()
    digest = hmac.new(secret, content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(secrets: Sequence[bytes], msg_id: str, timestamp: int, body: str) -> str:
    """The `webhook-signature` header: one signature per secret (several during a rotation)."""
    return " ".join(sign(secret, msg_id, timestamp, body) for secret in secrets)
