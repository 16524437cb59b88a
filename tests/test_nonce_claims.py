"""Replay claims against the real Redis: concurrent claims share pipelines, yet each nonce wins once."""

from __future__ import annotations

import asyncio
import secrets

import redis
import redis.asyncio as aioredis

from tests.conftest import REDIS_URL
from workers import redis_keys
from workers.callbacks.nonces import NONCE_TTL_S, NonceClaims


async def _claim_all(nonces: list[str]) -> list[tuple[bool, str]]:
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        claims = NonceClaims(client)
        return await asyncio.gather(*(claims.claim("plivo", 7, "v3", n) for n in nonces))
    finally:
        await client.aclose()


def test_each_nonce_is_won_once_among_concurrent_claims(redis_client: redis.Redis) -> None:
    fresh = [secrets.token_hex(8) for _ in range(200)]
    replayed = fresh[:50]  # presented a second time in the same burst
    results = asyncio.run(_claim_all(fresh + replayed))
    won = [key for first, key in results if first]
    assert sorted(won) == sorted(redis_keys.callback_nonce("plivo", 7, "v3", n) for n in fresh)
    assert [first for first, _ in results[200:]] == [False] * 50
    assert 0 < redis_client.ttl(won[0]) <= NONCE_TTL_S


def test_a_forgotten_nonce_can_be_claimed_again(redis_client: redis.Redis) -> None:
    nonce = secrets.token_hex(8)

    async def scenario() -> list[bool]:
        client = aioredis.Redis.from_url(REDIS_URL)
        try:
            claims = NonceClaims(client)
            first, key = await claims.claim("vobiz", 7, "v3", nonce)
            replay, _ = await claims.claim("vobiz", 7, "v3", nonce)
            await claims.forget(key)
            retry, _ = await claims.claim("vobiz", 7, "v3", nonce)
            return [first, replay, retry]
        finally:
            await client.aclose()

    assert asyncio.run(scenario()) == [True, False, True]


def test_an_unreachable_redis_fails_the_claims_instead_of_guessing() -> None:
    async def scenario() -> list[BaseException | tuple[bool, str]]:
        client = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
        try:
            claims = NonceClaims(client)
            return await asyncio.gather(*(claims.claim("plivo", 7, "v3", f"n{i}") for i in range(3)),
                                        return_exceptions=True)
        finally:
            await client.aclose()

    outcomes = asyncio.run(scenario())
    assert len(outcomes) == 3 and all(isinstance(o, Exception) for o in outcomes), outcomes


def test_one_nonce_under_two_signature_versions_is_two_claims(redis_client: redis.Redis) -> None:
    """A V3 nonce and a V2 nonce of the same text are separate keys (issue 20 item 1): neither version's
    claim stands in for the other's."""
    nonce = secrets.token_hex(8)

    async def scenario() -> list[tuple[bool, str]]:
        client = aioredis.Redis.from_url(REDIS_URL)
        try:
            claims = NonceClaims(client)
            return [await claims.claim("vobiz", 7, scheme, nonce) for scheme in ("v3", "v2", "v3")]
        finally:
            await client.aclose()

    (v3, v3_key), (v2, v2_key), (again, _) = asyncio.run(scenario())
    assert (v3, v2, again) == (True, True, False)
    assert v3_key != v2_key and ":v3:" in v3_key and ":v2:" in v2_key
