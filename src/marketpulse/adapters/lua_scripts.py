"""Lua scripts, loaded from ``adapters/lua/*.lua`` and registered once per client."""

from __future__ import annotations

import hashlib
from functools import cache
from importlib.resources import files
from typing import NamedTuple

from redis.asyncio import Redis
from redis.commands.core import AsyncScript


@cache
def source(name: str) -> str:
    """Text of ``lua/<name>.lua``; session scripts get the shared prelude in front."""
    lua = files("marketpulse.adapters").joinpath("lua")
    text = lua.joinpath(f"{name}.lua").read_text(encoding="utf-8")
    if name.startswith(("session_", "analysis_")):
        text = lua.joinpath("_session_prelude.lua").read_text(encoding="utf-8") + "\n" + text
    return text


def register(redis: Redis, name: str) -> AsyncScript:
    """EVALSHA with a transparent EVAL fallback after a SCRIPT FLUSH or on a fresh server."""
    return redis.register_script(source(name))


class Lua(NamedTuple):
    """A script's text and its SHA1, for callers that send EVALSHA themselves (the mux)."""

    name: str
    sha: str
    source: str


@cache
def load(name: str) -> Lua:
    text = source(name)
    return Lua(name, hashlib.sha1(text.encode()).hexdigest(), text)
