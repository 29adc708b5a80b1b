"""The Redis connection of a host or a worker: its URL, credentials and stream names.

Owns where credentials come from — the environment only: `REDIS_URL` (which may carry
them), or a URL without a password plus `REDIS_USERNAME` / `REDIS_PASSWORD` (ACL user and
password); a password written into a configuration file or a command line is refused, since
those are logged, listed by `ps` and committed. `rediss://` connects with TLS (`REDIS_CA_CERT`
names a CA bundle). `redacted_url` is the only form of a URL that is ever shown or logged.
Owns the key names of one namespace (`StreamNames`) and `ScaleError`, the clear refusal a
host or a worker gives when Redis is unreachable or refuses the credentials.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import SplitResult, urlsplit, urlunsplit

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError, RedisError, ResponseError

URL_ENV = "REDIS_URL"
USERNAME_ENV = "REDIS_USERNAME"
PASSWORD_ENV = "REDIS_PASSWORD"
CA_ENV = "REDIS_CA_CERT"
SCHEMES = ("redis", "rediss", "unix")
CONNECT_TIMEOUT_S = 5.0


class ScaleError(Exception):
    """Redis cannot be used: unreachable, refused credentials, a bad URL. Says which Redis
    (its URL without credentials) and what to do."""


class StreamNames(msgspec.Struct, frozen=True):
    """The keys of one namespace: one host and its workers share one."""

    namespace: str = "dm"

    def tasks(self, kind: str) -> str:
        return f"{self.namespace}:tasks:{kind}"

    def results(self, host: str) -> str:
        return f"{self.namespace}:results:{host}"

    def blob(self, digest: str) -> str:
        return f"{self.namespace}:blob:{digest}"

    @property
    def events(self) -> str:
        return f"{self.namespace}:events"

    @property
    def workers(self) -> str:
        return f"{self.namespace}:workers"

    @property
    def rejected(self) -> str:
        return f"{self.namespace}:rejected"

    GROUP = "workers"


def redacted_url(url: str) -> str:
    """`url` without its user name and password (the form that may be shown or logged)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<an invalid Redis URL>"
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    if parts.username or parts.password:
        netloc = "***@" + netloc
    return urlunsplit(SplitResult(parts.scheme, netloc, parts.path, "", ""))


def resolve_url(given: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The Redis URL to use: `given` (configuration or command line; no password in it), else
    `$REDIS_URL`; `ScaleError` when there is none or it is not a Redis URL."""
    env = os.environ if environ is None else environ
    url = given or env.get(URL_ENV, "")
    if not url:
        raise ScaleError(f"no Redis URL: pass --redis URL, set [scale] redis, or set ${URL_ENV}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - validates the port
    except ValueError as exc:
        raise ScaleError(f"invalid Redis URL {redacted_url(url)}: {exc}") from None
    if parts.scheme not in SCHEMES:
        raise ScaleError(
            f"{redacted_url(url)}: the scheme must be one of {', '.join(SCHEMES)} "
            f"(rediss:// for TLS)"
        )
    if given and parts.password:
        raise ScaleError(
            f"{redacted_url(url)}: a password in the configuration or on the command line is "
            f"refused; put it in ${PASSWORD_ENV} (and the user in ${USERNAME_ENV}) or give the "
            f"whole URL in ${URL_ENV}"
        )
    return url


def connect(
    url: str, environ: Mapping[str, str] | None = None, *, connections: int = 64
) -> aioredis.Redis:
    """A client for `url` (from `resolve_url`) with the environment's credentials; nothing is
    sent until the first command (see `check_connection`). At most `connections` at once:
    size it for the blocking reads and the attempts in flight (the host: its slots)."""
    env = os.environ if environ is None else environ
    options: dict[str, object] = {
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "health_check_interval": 15,
    }
    if env.get(USERNAME_ENV):
        options["username"] = env[USERNAME_ENV]
    if env.get(PASSWORD_ENV):
        options["password"] = env[PASSWORD_ENV]
    if url.startswith("rediss://") and env.get(CA_ENV):
        options["ssl_ca_certs"] = env[CA_ENV]
    return aioredis.Redis.from_url(url, max_connections=connections, **options)  # type: ignore[arg-type]


async def check_connection(client: aioredis.Redis, url: str) -> None:
    """PING once; `ScaleError` naming the Redis (without credentials) when it refuses."""
    where = redacted_url(url)
    try:
        await client.ping()
    except AuthenticationError as exc:
        raise ScaleError(f"Redis at {where} refused the credentials: {exc}") from None
    except ResponseError as exc:
        if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc) or "NOPERM" in str(exc):
            raise ScaleError(f"Redis at {where} refused the credentials: {exc}") from None
        raise ScaleError(f"Redis at {where} answered PING with an error: {exc}") from None
    except (RedisError, OSError) as exc:
        raise ScaleError(f"Redis at {where} is unreachable: {exc}") from None


def is_auth_refusal(exc: BaseException) -> bool:
    text = str(exc)
    return isinstance(exc, AuthenticationError) or any(
        word in text for word in ("NOAUTH", "WRONGPASS", "NOPERM")
    )
