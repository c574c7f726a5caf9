"""Lua scripts, loaded from ``adapters/lua/*.lua`` and registered once per client."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

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
