"""The aiohttp application: every provider's routes plus the /_sim/* control endpoints, and `serve`
which runs it until SIGINT/SIGTERM and dumps the ledger on the way out."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import socket
import time
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from simulator import stamping
from simulator.carrier import Carrier
from simulator.config import ConfigError, FaultSpec, SimConfig, apply_patch, parse_scheduled_faults
from simulator.providers import PROVIDER_CLASSES
from simulator.providers.base import json_response
from simulator.providers.voipbin import VoipbinProvider
from simulator.providers.voipbin_call_list import call_list_routes

CARRIER_KEY = web.AppKey("carrier", Carrier)


class Listener:
    """The listening socket, which can refuse connections for a while (the carrier unreachable): the site
    is stopped and every open connection closed, so clients get ECONNREFUSED, then it listens again on
    the same port. Calls already placed keep running and sending their callbacks meanwhile."""

    def __init__(self, host: str, port: int, *, stamp: bool = False) -> None:
        self.stamp = stamp
        self.sock = _listen(host, port, stamp)
        self.host = host
        self.port = int(self.sock.getsockname()[1])
        self.runner: web.AppRunner | None = None
        self.site: web.SockSite | None = None
        self.refusing_until = 0.0
        self.outage: asyncio.Task[None] | None = None
        self.timers: list[asyncio.TimerHandle] = []  # scheduled refusals not begun yet

    async def start(self, runner: web.AppRunner) -> None:
        self.runner = runner
        self.site = web.SockSite(runner, self.sock)
        await self.site.start()

    def refuse_for(self, seconds: float) -> None:
        """Start refusing connections now, for `seconds` (a later call replaces the end)."""
        loop = asyncio.get_running_loop()
        self.refusing_until = loop.time() + seconds
        if self.outage is None or self.outage.done():
            self.outage = asyncio.ensure_future(self._outage())

    def refuse_at(self, start: float, seconds: float) -> None:
        """Refuse connections from `start` (time.monotonic) for `seconds`; an outage already running then
        is lengthened, never shortened."""
        loop = asyncio.get_running_loop()
        # (uvloop's loop.time() need not be time.monotonic(): wait a delay, not an instant of its clock)
        self.timers = [t for t in self.timers if not t.cancelled() and t.when() > loop.time()]
        delay = max(0.0, start - time.monotonic())
        self.timers.append(loop.call_later(delay, self._scheduled_refusal, seconds))

    def _scheduled_refusal(self, seconds: float) -> None:
        running = self.outage is not None and not self.outage.done()
        previous = self.refusing_until if running else 0.0
        self.refuse_for(seconds)
        self.refusing_until = max(self.refusing_until, previous)

    def cancel_scheduled(self) -> None:
        """Drop the refusals not begun yet (one under way runs its course)."""
        for timer in self.timers:
            timer.cancel()
        self.timers.clear()

    async def _outage(self) -> None:
        assert self.runner is not None and self.site is not None
        await asyncio.sleep(0.05)  # let the control request's answer leave first
        await self.site.stop()
        self.sock.close()
        if self.runner.server is not None:
            for connection in self.runner.server.connections:  # keep-alive ones too: nothing gets through
                connection.force_close()
        loop = asyncio.get_running_loop()
        while (left := self.refusing_until - loop.time()) > 0:
            await asyncio.sleep(left)
        self.sock = _listen(self.host, self.port, self.stamp)
        await self.start(self.runner)


LISTENER_KEY = web.AppKey("listener", Listener)


def _carrier(request: web.Request) -> Carrier:
    return request.app[CARRIER_KEY]


async def health(request: web.Request) -> web.Response:
    carrier = _carrier(request)
    return json_response({"status": "ok", "speed": carrier.speed, "base_url": carrier.public_url,
                          "accounts": sorted(carrier.config.accounts),
                          "arrival_stamp": carrier.arrival_stamp})


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


async def outage(request: web.Request) -> web.Response:
    """Refuse every connection for `seconds` (JSON body {"seconds": N}), then listen again."""
    try:
        body = orjson.loads(await request.read() or b"{}")
        seconds = float(body["seconds"])
        if not 0 < seconds <= 3600:
            raise ValueError
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return json_response({"error": "expected {\"seconds\": N} with 0 < N <= 3600"}, 400)
    request.app[LISTENER_KEY].refuse_for(seconds)
    return json_response({"status": "refusing connections", "seconds": seconds})


def arm_faults(app: web.Application, specs: list[FaultSpec]) -> None:
    """Arm scheduled faults from now: the create template asks the carrier's schedule; "refused" closes the
    whole listener at its start (one socket serves every account of this process)."""
    now = time.monotonic()
    for fault in app[CARRIER_KEY].schedule.add(specs, now):
        if fault.fault == "refused" and LISTENER_KEY in app:
            app[LISTENER_KEY].refuse_at(fault.start, fault.end - fault.start)


async def schedule_faults(request: web.Request) -> web.Response:
    """Add timed per-account faults: a JSON list of {"account", "fault", "start_in", "seconds"}, `fault` one
    of "401", "402", "5xx", "placed_5xx", "refused". `start_in` counts from this request and both are real
    seconds on the simulator's monotonic clock, not scaled by --speed. While a window is active, that
    account's create requests get the fault (other accounts are untouched; its status and hang-up API
    answer as usual); "refused" refuses the whole listener, as an account that must fail alone runs on a
    simulator of its own. 400 with the field at fault; the answer is the listing of GET."""
    carrier = _carrier(request)
    try:
        specs = parse_scheduled_faults(orjson.loads(await request.read()), carrier.config.accounts)
    except (ConfigError, orjson.JSONDecodeError) as exc:
        return json_response({"error": str(exc)}, 400)
    arm_faults(request.app, specs)
    return json_response(carrier.schedule.listing())


async def list_faults(request: web.Request) -> web.Response:
    """Every scheduled window: monotonic `start`/`end`, the same as epoch `start_wall`/`end_wall`, `state`."""
    return json_response(_carrier(request).schedule.listing())


async def clear_faults(request: web.Request) -> web.Response:
    """Forget every scheduled fault; a refusal already under way runs its course (nothing could ask)."""
    _carrier(request).schedule.clear()
    if LISTENER_KEY in request.app:
        request.app[LISTENER_KEY].cancel_scheduled()
    return json_response(_carrier(request).schedule.listing())


async def not_found(request: web.Request) -> web.Response:
    if request.path.startswith("/v1/Account"):
        return PROVIDER_CLASSES["plivo"](_carrier(request)).error(404, "Not found")
    return json_response({"error": "not found", "path": request.path}, 404)


def build_app(carrier: Carrier, listener: Listener | None = None) -> web.Application:
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app[CARRIER_KEY] = carrier
    if listener is not None:
        app[LISTENER_KEY] = listener
    for name, cls in PROVIDER_CLASSES.items():
        provider = cls(carrier)
        carrier.providers[name] = provider
        app.add_routes(provider.routes())
        # its call list (page, Get call list), in a module of its own
        if isinstance(provider, VoipbinProvider):
            app.add_routes(call_list_routes(provider))
    app.add_routes([
        web.get("/_sim/health", health), web.get("/_sim/ledger", ledger), web.get("/_sim/stats", stats),
        web.get("/_sim/config", get_config), web.post("/_sim/config", patch_config),
        web.post("/_sim/reset", reset), web.post("/_sim/outage", outage),
        web.post("/_sim/faults/schedule", schedule_faults), web.get("/_sim/faults/schedule", list_faults),
        web.delete("/_sim/faults/schedule", clear_faults),
        web.route("*", "/{tail:.*}", not_found),
    ])
    return app


def _listen(host: str, port: int, stamp: bool = False) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if stamp:
        # Set on the listener, accepted sockets inherit it, so bytes that arrive before the starved
        # process gets round to accept() are stamped too.
        stamping.enable(sock)
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
    # Kernel receive stamps need the loop's transports to read with recvmsg (cli.run_simulator picks it).
    stamp = isinstance(asyncio.get_running_loop(), stamping.StampingEventLoop)
    carrier.arrival_stamp = carrier.ledger.arrival_mode = "kernel" if stamp else "handler"
    listener = Listener(host, port, stamp=stamp)
    carrier.public_url = f"http://{host}:{listener.port}"
    await carrier.start()
    runner = web.AppRunner(build_app(carrier, listener), access_log=None, handle_signals=False,
                           shutdown_timeout=1.0, handler_cancellation=True)
    await runner.setup()
    await listener.start(runner)
    arm_faults(runner.app, config.scheduled_faults)  # the config's times count from now
    print(f"simulator listening on {carrier.public_url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        listener.cancel_scheduled()
        if listener.outage is not None:
            listener.outage.cancel()
        if ledger_out:
            dump: dict[str, Any] = {"ledger": carrier.ledger.snapshot(), "stats": carrier.ledger.stats()}
            Path(ledger_out).write_bytes(orjson.dumps(dump, option=orjson.OPT_INDENT_2))
        await runner.cleanup()
        await carrier.close()
