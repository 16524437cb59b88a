"""The replay check of signed callbacks: a nonce is claimed in Redis once; a second claim is a replay.

Thousands of callbacks a second each claiming their own nonce cost a Redis round trip apiece (8-12% of the
API process). Claims made while one round trip is out wait for it and then go together in one pipeline:
SET NX per nonce, so within a pipeline too only the first claim of a nonce wins.

A nonce is one token: letters, digits, '_' and '-' (carriers send 20 digits). The signed strings use '.'
and '?' as separators (Plivo/Vobiz V3: `url[?query][.|?params]` + "." + nonce; V2: `url` + nonce), so a
"nonce" holding them could be the tail of another version's string: Vobiz V3's `base + "." + N` is V2's
`base + nonce` for nonce "." + N. Refusing such nonces makes every signed string name its nonce (the text
after its last '.') and its version; each version's nonces are claimed apart as well (redis_keys).
"""

from __future__ import annotations

import asyncio
import re

import redis.asyncio as aioredis

from workers import redis_keys

NONCE_TTL_S = 900  # the least a nonce is remembered; longer when its URL stays valid longer
MAX_NONCE_CHARS = 128
_TOKEN = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_NONCE_CHARS}}}")


def well_formed_nonce(nonce: str) -> bool:
    """True for a nonce that is one token (no separator of any signed string), at most MAX_NONCE_CHARS."""
    return _TOKEN.fullmatch(nonce) is not None


class NonceClaims:
    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self.waiting: list[tuple[str, int, asyncio.Future[bool]]] = []
        self.flusher: asyncio.Task[None] | None = None

    async def claim(self, provider: str, account_id: int, scheme: str, nonce: str,
                    ttl_s: int = NONCE_TTL_S) -> tuple[bool, str]:
        """(True, key) the first time this account sees this nonce under this signature version (`scheme`),
        (False, key) for a replay; raises if Redis cannot answer (the caller must not guess). Kept `ttl_s`:
        as long as the signature it came with could be presented again."""
        key = redis_keys.callback_nonce(provider, account_id, scheme, nonce)
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.waiting.append((key, max(ttl_s, NONCE_TTL_S), future))
        if self.flusher is None or self.flusher.done():
            self.flusher = asyncio.create_task(self._flush())
        return await future, key

    async def forget(self, key: str) -> None:
        """Let a carrier's retry pass: the event this nonce came with was not stored."""
        await self.client.delete(key)

    async def _flush(self) -> None:
        while self.waiting:
            batch, self.waiting = self.waiting, []
            pipe = self.client.pipeline(transaction=False)
            for key, ttl_s, _ in batch:
                pipe.set(key, 1, nx=True, ex=ttl_s)
            try:
                results = await pipe.execute(raise_on_error=False)
            except Exception as exc:  # the connection failed: every claim of this batch is undecided
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, _, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(bool(result))
