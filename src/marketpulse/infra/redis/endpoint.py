"""Where a raw Redis connection goes and how it logs in, taken from a redis-py client.

The hot-path connections (``mux.py`` for commands, ``pubsub.py`` for pub/sub) speak RESP
themselves over asyncio protocols; this is the one place that knows the server address, the
database, the credentials and TLS they share with the pooled client.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

import hiredis
from redis.asyncio import Redis
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection

P = TypeVar("P", bound=asyncio.Protocol)
Arg = str | bytes | int | float

pack: Any = hiredis.pack_command  # its stub types the argument as a 1-tuple


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str = "127.0.0.1"
    port: int = 6379
    path: str | None = None  # a unix socket instead of host:port
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in a log line
    ssl_context: ssl.SSLContext | None = None

    @classmethod
    def of(cls, redis: Redis) -> Endpoint:
        """The server, database and credentials of a redis-py client's pool."""
        pool = redis.connection_pool
        c = pool.connection_kwargs
        ctx: ssl.SSLContext | None = None
        if issubclass(pool.connection_class, SSLConnection):
            ctx = ssl.create_default_context()
            if c.get("ssl_cert_reqs") in ("none", ssl.CERT_NONE):
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
        unix = issubclass(pool.connection_class, UnixDomainSocketConnection)
        return cls(
            host=c.get("host", "127.0.0.1"),
            port=int(c.get("port", 6379)),
            path=c.get("path") if unix else None,
            db=int(c.get("db", 0) or 0),
            username=c.get("username"),
            password=c.get("password"),
            ssl_context=ctx,
        )

    def display(self) -> str:
        """The server as a URL for logs and errors: never the credentials."""
        if self.path is not None:
            return f"unix://{self.path}?db={self.db}"
        scheme = "rediss" if self.ssl_context is not None else "redis"
        return f"{scheme}://{self.host}:{self.port}/{self.db}"

    def url_with_credentials(self) -> str:
        """The server as a URL redis-py accepts, credentials included: never log it."""
        if self.path is not None:
            return f"unix://{self.path}?db={self.db}"
        scheme = "rediss" if self.ssl_context is not None else "redis"
        user = quote(self.username or "", safe="")
        auth = f"{user}:{quote(self.password, safe='')}@" if self.password is not None else ""
        return f"{scheme}://{auth}{self.host}:{self.port}/{self.db}"

    def login(self, *, select_db: bool = True) -> list[tuple[Arg, ...]]:
        """The commands a fresh connection sends first (AUTH, SELECT), each answering +OK."""
        out: list[tuple[Arg, ...]] = []
        if self.password is not None:
            if self.username:
                out.append(("AUTH", self.username, self.password))
            else:
                out.append(("AUTH", self.password))
        if select_db and self.db:
            out.append(("SELECT", self.db))
        return out

    async def open(self, factory: Callable[[], P]) -> P:
        """Connect a protocol instance (no login: the caller sends ``login()`` first)."""
        loop = asyncio.get_running_loop()
        if self.path is not None:
            _, proto = await loop.create_unix_connection(factory, self.path)
        else:
            _, proto = await loop.create_connection(
                factory, self.host, self.port, ssl=self.ssl_context
            )
        return proto
