"""The Redis boundary rule, read from the source: outside ``marketpulse/infra/redis`` no module
imports redis-py (``redis.exceptions`` included) or hiredis, and no ``except`` names a redis-py
error. Features see ``RedisUnavailable`` only; the boundary translates."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import marketpulse

PACKAGE = Path(marketpulse.__file__).parent
BOUNDARY = PACKAGE / "infra" / "redis"
ALWAYS_REDIS = ("RedisError", "ResponseError")  # names no module of ours defines


def feature_modules() -> Iterator[Path]:
    for path in sorted(PACKAGE.rglob("*.py")):
        if BOUNDARY not in path.parents:
            yield path


def redis_imports(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            if name.split(".")[0] in ("redis", "hiredis"):
                yield node.lineno, name


def caught_names(handler: ast.ExceptHandler) -> Iterator[ast.expr]:
    if isinstance(handler.type, ast.Tuple):
        yield from handler.type.elts
    elif handler.type is not None:
        yield handler.type


def redis_catches(tree: ast.AST, imported: set[str]) -> Iterator[tuple[int, str]]:
    """``except`` clauses naming a redis-py error: a name imported from redis, any attribute of
    the ``redis`` module (``redis.exceptions.ResponseError``), or ``RedisError`` however it got
    there."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.ExceptHandler):
            continue
        for expr in caught_names(node):
            text = ast.unparse(expr)
            if text.startswith("redis.") or text in ALWAYS_REDIS or text in imported:
                yield node.lineno, text


def imported_names(tree: ast.AST) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("redis"):
            out.update(a.asname or a.name for a in node.names)
    return out


def test_the_rule_bites() -> None:
    bad = ast.parse(
        "from redis.exceptions import RedisError\n"
        "try:\n    pass\nexcept (KeyError, RedisError):\n    pass\n"
    )
    assert list(redis_imports(bad)) == [(1, "redis.exceptions")]
    assert list(redis_catches(bad, imported_names(bad))) == [(4, "RedisError")]
    attr = ast.parse(
        "import redis\ntry:\n    pass\nexcept redis.exceptions.ResponseError:\n    pass\n"
    )
    assert list(redis_catches(attr, set())) == [(4, "redis.exceptions.ResponseError")]


def test_no_feature_imports_redis_or_catches_its_errors() -> None:
    found: list[str] = []
    for path in feature_modules():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        where = path.relative_to(PACKAGE.parent)
        found += [f"{where}:{line} imports {name}" for line, name in redis_imports(tree)]
        found += [
            f"{where}:{line} catches {name}"
            for line, name in redis_catches(tree, imported_names(tree))
        ]
    assert found == [], "Redis is reached through infra/redis/client.py only:\n" + "\n".join(found)
