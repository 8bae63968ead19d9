"""API tokens: random secrets handed to users once; only their hashes are stored."""

from __future__ import annotations

import hashlib
import secrets

PREFIX = "lomas_"


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    # Tokens carry 256 random bits, so a fast hash is enough: there is nothing to brute-force.
    return "sha256:" + hashlib.sha256(token.encode("utf-8")).hexdigest()
