from __future__ import annotations

from inventory.auth import (
    TokenRegistry,
    hash_password,
    new_salt,
    new_session_token,
    verify_password,
)


def test_tokens_are_long_and_distinct():
    tokens = {new_session_token() for _ in range(50)}
    assert len(tokens) == 50
    assert all(len(t) == 32 and t.isalnum() for t in tokens)


def test_password_hash_verifies_only_the_right_password():
    salt = new_salt()
    stored = hash_password("correct horse", salt)
    assert verify_password("correct horse", salt, stored)
    assert not verify_password("wrong horse", salt, stored)
    assert hash_password("correct horse", new_salt()) != stored


def test_registry_issues_and_revokes():
    registry = TokenRegistry()
    token = registry.issue("ada")
    assert registry.owner_of(token) == "ada"
    assert registry.revoke(token)
    assert registry.owner_of(token) is None
