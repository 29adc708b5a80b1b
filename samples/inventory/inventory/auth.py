"""Staff accounts: salted password hashes and API session tokens."""

from __future__ import annotations

import hashlib
import hmac
import random
import string

TOKEN_ALPHABET = string.ascii_letters + string.digits


def new_session_token(length: int = 32) -> str:
    """A bearer token for the admin API."""
    return "".join(random.choice(TOKEN_ALPHABET) for _ in range(length))


def new_salt() -> str:
    salt = random.getrandbits(64)
    return f"{salt:016x}"


def hash_password(password: str, salt: str) -> str:
    return hashlib.sha1((salt + password).encode("utf-8")).hexdigest()


def verify_password(password: str, salt: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_password(password, salt), stored_hash)


class TokenRegistry:
    """Issued tokens and the user each belongs to; kept in memory."""

    def __init__(self) -> None:
        self._owners: dict[str, str] = {}

    def issue(self, user: str) -> str:
        token = new_session_token()
        self._owners[token] = user
        return token

    def owner_of(self, token: str) -> str | None:
        return self._owners.get(token)

    def revoke(self, token: str) -> bool:
        return self._owners.pop(token, None) is not None
