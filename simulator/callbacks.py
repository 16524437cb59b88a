"""Callback delivery as a carrier does it: one shared keep-alive HTTP client, retries with backoff on
non-2xx or timeout, and seeded faults (drop, duplicate, delay, reorder) on a fraction of callbacks."""

from __future__ import annotations

import asyncio
import base64
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from simulator.config import SimConfig
from simulator.http_client import HttpError, HttpPool, form_encode
from simulator.ledger import CallRecord, Ledger

REORDER_LAG = 0.05  # seconds a held-back callback trails the one that overtakes it


@dataclass(slots=True)
class Callback:
    """One HTTP request to a customer's URL, fully built (body and signature headers) by a provider."""

    kind: str                       # ring, answer, machine, hangup, or a VoIPbin event type
    url: str
    method: str = "POST"
    body: bytes | None = None
    params: dict[str, str] | None = None   # GET: sent as the query string
    headers: dict[str, str] = field(default_factory=dict)
    auth: tuple[str, str] | None = None    # HTTP Basic (Bandwidth)
    final: bool = False
    retry_4xx: bool = True          # VoIPbin retries only transport errors and >= 500
    attempts: int | None = None     # its own attempts (Plivo's `rc` retry count + 1); None: the policy's
    # What the customer's 2xx answer makes the carrier do next (an answer document that gathers digits:
    # the keypress callback of a callee who pressed one).
    on_reply: Callable[[bytes], list[Callback]] | None = None


class CallbackSender:
    """Delivers callbacks in background tasks and records every attempt in the ledger."""

    def __init__(self, config: SimConfig, ledger: Ledger, *, speed: float, seed: int) -> None:
        self.config = config
        self.ledger = ledger
        self.speed = speed
        # One seeded stream per fault kind: with a single shared stream, which draw decides a drop depends on
        # how the other faults interleave, and a run could (deterministically) drop nothing at 10%.
        fault_kinds = ("reorder", "drop", "delay", "duplicate")
        self.rng = {kind: random.Random(f"{seed}:{kind}") for kind in fault_kinds}
        self.session: aiohttp.ClientSession | None = None  # https URLs only
        self.pool = HttpPool()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.held: dict[str, list[Callback]] = {}

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=512, limit_per_host=0, ttl_dns_cache=300, use_dns_cache=True)
        self.session = aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                             skip_auto_headers=("User-Agent",))

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.session is not None:
            await self.session.close()
        self.pool.close()

    def send(self, call: CallRecord, cb: Callback) -> None:
        """Queue a callback of `call`, applying the configured faults."""
        faults = self.config.faults
        if not cb.final and faults.reorder and self.rng["reorder"].random() < faults.reorder:
            self.held.setdefault(call.call_uuid, []).append(cb)  # released after the next one of this call
            return
        self._dispatch(call, cb, 0.0)
        for late in self.held.pop(call.call_uuid, ()):
            self.ledger.cb_reordered += 1
            self._dispatch(call, late, REORDER_LAG, fault="reordered")

    def _dispatch(self, call: CallRecord, cb: Callback, lag: float, fault: str | None = None) -> None:
        faults = self.config.faults
        rng = self.rng
        if faults.drop and rng["drop"].random() < faults.drop:
            self.ledger.cb_dropped += 1
            self.ledger.callback_attempt(call, cb.kind, cb.url, 0, None, None, fault="dropped")
            return
        if faults.delay and rng["delay"].random() < faults.delay:
            lag += rng["delay"].uniform(0.0, faults.delay_max)
            fault = "delayed"
        self._spawn(call, cb, lag, fault)
        if faults.duplicate and rng["duplicate"].random() < faults.duplicate:
            self.ledger.cb_duplicated += 1
            self._spawn(call, cb, lag + rng["duplicate"].uniform(0.0, 0.2), "duplicate")

    def _spawn(self, call: CallRecord, cb: Callback, lag: float, fault: str | None) -> None:
        self.ledger.cb_pending += 1
        task = asyncio.ensure_future(self._deliver(call, cb, lag, fault))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _deliver(self, call: CallRecord, cb: Callback, lag: float, fault: str | None) -> None:
        policy = self.config.callbacks
        ledger = self.ledger
        try:
            if lag > 0:
                await asyncio.sleep(lag)
            attempts = policy.attempts if cb.attempts is None else cb.attempts
            for attempt in range(1, max(1, attempts) + 1):
                status, error, reply = await self._attempt(cb, policy.timeout)
                ledger.callback_attempt(call, cb.kind, cb.url, attempt, status, error, fault)
                if status is not None and 200 <= status < 300:
                    ledger.cb_delivered += 1
                    for follow in cb.on_reply(reply) if cb.on_reply else ():
                        self._spawn(call, follow, 0.0, None)
                    return
                if status is not None and status < 500 and not cb.retry_4xx:
                    break
                if attempt < attempts:
                    await asyncio.sleep(policy.backoff * policy.backoff_factor ** (attempt - 1) / self.speed)
            ledger.cb_failed += 1
        finally:
            ledger.cb_pending -= 1

    async def _attempt(self, cb: Callback, timeout: float) -> tuple[int | None, str | None, bytes]:
        if cb.url.startswith("http://"):
            return await self._attempt_plain(cb, timeout)
        return await self._attempt_aiohttp(cb, timeout)

    async def _attempt_plain(self, cb: Callback, timeout: float) -> tuple[int | None, str | None, bytes]:
        headers = cb.headers
        if cb.auth is not None:
            token = base64.b64encode(f"{cb.auth[0]}:{cb.auth[1]}".encode()).decode()
            headers = {**headers, "Authorization": f"Basic {token}"}
        url = cb.url
        if cb.params:
            url += ("&" if "?" in url else "?") + form_encode(cb.params)
        try:
            status, reply = await self.pool.request_full(cb.method, url, cb.body, headers, timeout)
            return status, None, reply
        except TimeoutError:
            return None, "timeout", b""
        except (HttpError, OSError) as exc:
            return None, f"{type(exc).__name__}: {exc}", b""

    async def _attempt_aiohttp(self, cb: Callback, timeout: float) -> tuple[int | None, str | None, bytes]:
        assert self.session is not None
        auth = aiohttp.BasicAuth(*cb.auth) if cb.auth else None
        try:
            async with self.session.request(
                cb.method, cb.url, data=cb.body, params=cb.params, headers=cb.headers, auth=auth,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as resp:
                return resp.status, None, await resp.read()
        except TimeoutError:
            return None, "timeout", b""
        except aiohttp.ClientError as exc:
            return None, f"{type(exc).__name__}: {exc}", b""
