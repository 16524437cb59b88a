"""The Lua scripts beside this file, registered once per Redis client (EVALSHA, reloaded on NOSCRIPT)."""

from __future__ import annotations

import weakref
from functools import cache
from importlib.resources import files

import redis
from redis.commands.core import Script

_registered: weakref.WeakKeyDictionary[redis.Redis, dict[str, Script]] = weakref.WeakKeyDictionary()


@cache
def _source(name: str) -> str:
    return files(__package__).joinpath(f"{name}.lua").read_text(encoding="utf-8")


def script(client: redis.Redis, name: str) -> Script:
    """The registered script `name`.lua for this client."""
    per_client = _registered.setdefault(client, {})
    if name not in per_client:
        per_client[name] = client.register_script(_source(name))
    return per_client[name]
