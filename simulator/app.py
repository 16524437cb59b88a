"""The aiohttp application: every provider's routes plus the /_sim/* control endpoints, and `serve`
which runs it until SIGINT/SIGTERM and dumps the ledger on the way out."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import socket
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from simulator.carrier import Carrier
from simulator.config import ConfigError, SimConfig, apply_patch
from simulator.providers import PROVIDER_CLASSES
from simulator.providers.base import json_response

CARRIER_KEY = web.AppKey("carrier", Carrier)


def _carrier(request: web.Request) -> Carrier:
    return request.app[CARRIER_KEY]


async def health(request: web.Request) -> web.Response:
    carrier = _carrier(request)
    return json_response({"status": "ok", "speed": carrier.speed, "base_url": carrier.public_url,
                          "accounts": sorted(carrier.config.accounts)})


async def ledger(request: web.Request) -> web.Response:
    try:
        since = int(request.query.get("since", "0"))
    except ValueError:
        return json_response({"error": "since must be an integer seq"}, 400)
    return json_response(_carrier(request).ledger.snapshot(since))


async def stats(request: web.Request) -> web.Response:
    return json_response(_carrier(request).ledger.stats())


async def get_config(request: web.Request) -> web.Response:
    return json_response(_carrier(request).config.to_dict())


async def patch_config(request: web.Request) -> web.Response:
    carrier = _carrier(request)
    try:
        patch = orjson.loads(await request.read())
        if not isinstance(patch, dict):
            raise ConfigError("expected a JSON object")
        apply_patch(carrier.config, patch)
    except (ConfigError, orjson.JSONDecodeError, TypeError, ValueError) as exc:
        return json_response({"error": str(exc)}, 400)
    return json_response(carrier.config.to_dict())


async def reset(request: web.Request) -> web.Response:
    _carrier(request).reset()
    return json_response({"status": "reset"})


async def not_found(request: web.Request) -> web.Response:
    if request.path.startswith("/v1/Account"):
        return PROVIDER_CLASSES["plivo"](_carrier(request)).error(404, "Not found")
    return json_response({"error": "not found", "path": request.path}, 404)


def build_app(carrier: Carrier) -> web.Application:
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app[CARRIER_KEY] = carrier
    for name, cls in PROVIDER_CLASSES.items():
        provider = cls(carrier)
        carrier.providers[name] = provider
        app.add_routes(provider.routes())
    app.add_routes([
        web.get("/_sim/health", health), web.get("/_sim/ledger", ledger), web.get("/_sim/stats", stats),
        web.get("/_sim/config", get_config), web.post("/_sim/config", patch_config),
        web.post("/_sim/reset", reset), web.route("*", "/{tail:.*}", not_found),
    ])
    return app


def _listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(4096)
    sock.setblocking(False)
    return sock


async def serve(config: SimConfig, *, host: str, port: int, speed: float, seed: int,
                ledger_out: str | None = None) -> None:
    """Run the simulator until a signal; print `listening on URL` once ready (port 0 picks one)."""
    # The ledger keeps every call and callback attempt: with default thresholds the collector keeps
    # re-scanning that growing, acyclic heap; collect young objects far less often instead.
    gc.set_threshold(100_000, 50, 1000)
    gc.freeze()
    carrier = Carrier(config, speed=speed, seed=seed)
    sock = _listen(host, port)
    bound = sock.getsockname()[1]
    carrier.public_url = f"http://{host}:{bound}"
    await carrier.start()
    runner = web.AppRunner(build_app(carrier), access_log=None, handle_signals=False,
                           shutdown_timeout=1.0, handler_cancellation=True)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    print(f"simulator listening on {carrier.public_url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        if ledger_out:
            dump: dict[str, Any] = {"ledger": carrier.ledger.snapshot(), "stats": carrier.ledger.stats()}
            Path(ledger_out).write_bytes(orjson.dumps(dump, option=orjson.OPT_INDENT_2))
        await runner.cleanup()
        await carrier.close()
