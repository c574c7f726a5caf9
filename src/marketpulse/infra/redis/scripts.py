"""Lua scripts: each feature keeps its own in ``<feature>/lua/*.lua``; this is the one loader.

A feature names its folder once (``ScriptFolder("marketpulse.sessions", prelude=...)``) and
its store runs scripts by name through the boundary (``RedisClient.script(folder, name)``, the
mux); ``load`` gives the text and SHA1 (for a store that packs EVALSHA into a bulk pipeline),
``register`` a raw redis-py script (benchmarks that compare transports, bulk loads).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import NamedTuple

from redis.asyncio import Redis
from redis.commands.core import AsyncScript


class Lua(NamedTuple):
    """A script's text and its SHA1, for callers that send EVALSHA themselves (the mux)."""

    name: str
    sha: str
    source: str


@cache
def _read(package: str, name: str) -> str:
    return files(package).joinpath("lua").joinpath(f"{name}.lua").read_text(encoding="utf-8")


@dataclass(frozen=True, slots=True)
class ScriptFolder:
    """The ``lua/`` folder of one package. Scripts whose name starts with one of
    ``prelude_for`` get ``lua/<prelude>.lua`` in front (shared helpers of a feature)."""

    package: str
    prelude: str | None = None
    prelude_for: tuple[str, ...] = ()

    def source(self, name: str) -> str:
        text = _read(self.package, name)
        if self.prelude is not None and name.startswith(self.prelude_for):
            text = _read(self.package, self.prelude) + "\n" + text
        return text

    def load(self, name: str) -> Lua:
        text = self.source(name)
        return Lua(name, hashlib.sha1(text.encode()).hexdigest(), text)

    def register(self, redis: Redis, name: str) -> AsyncScript:
        """EVALSHA with a transparent EVAL fallback after a SCRIPT FLUSH or on a fresh server."""
        return redis.register_script(self.source(name))
