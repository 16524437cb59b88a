"""docker-compose.yml, the Dockerfile and deploy/simulator.json agree with the code they start.

No Docker engine is needed: the files are parsed, every command the project image runs is parsed by the real
`dialer` command line, and the processes are started natively once (`dialer --help`, the simulator with the
compose demo's config). When a Docker Compose CLI is installed, `docker compose config` checks the file too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
import yaml

from tests.sim_helpers import start_simulator

REPO = Path(__file__).resolve().parent.parent
COMPOSE_PATH = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
PROJECT_IMAGE = "dialer:local"
APP_DIR = "/app"  # WORKDIR of the image
REQUIRED_VAR = re.compile(r"\$\{[A-Z_][A-Z0-9_]*:\?[^}]+\}")
ANY_VAR = re.compile(r"\$\{[^}]*\}")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY$", re.IGNORECASE)
URL_PASSWORD = re.compile(r"://[^:/@\s]+:([^@\s]+)@")
ALLOWED_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_PATH.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _project_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in services.items()
            if svc.get("image") == PROJECT_IMAGE or "build" in svc}


def _parse_dialer(argv: list[str]) -> tuple[str, dict[str, Any]]:
    """Parse `dialer …` with the real command tree; return the command path and its parsed parameters."""
    from workers.entrypoints.cli import app

    assert argv and argv[0] == "dialer", f"not a dialer command: {argv}"
    command: Any = typer.main.get_command(app)
    args, path = list(argv[1:]), list[str]()
    while hasattr(command, "commands"):  # a group: the next word names a sub-command
        assert args, f"{argv}: {' '.join(path) or 'dialer'} needs a sub-command"
        name = args.pop(0)
        assert name in command.commands, f"{argv}: no sub-command {name!r} (have {sorted(command.commands)})"
        command, path = command.commands[name], [*path, name]
    ctx = command.make_context(" ".join(path), args)  # raises on an unknown option or a bad value
    return " ".join(path), dict(ctx.params)


def _env(svc: dict[str, Any]) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _host_file(container_path: str) -> Path:
    """A file of the image under /app, as the repository file the Dockerfile copies there."""
    assert container_path.startswith(APP_DIR + "/"), container_path
    relative = container_path[len(APP_DIR) + 1:]
    copies = re.findall(r"^COPY\s+(?!--from)(\S+)\s+(\S+)\s*$", DOCKERFILE.read_text(), re.MULTILINE)
    assert any(src == relative and dst.removeprefix("./") == relative for src, dst in copies), \
        f"the Dockerfile does not copy {relative} to {container_path}"
    return REPO / relative


def test_every_project_service_runs_a_real_dialer_command(services: dict[str, dict[str, Any]]) -> None:
    project = _project_services(services)
    assert {"migrate", "api", "worker", "beat", "flower", "simulator"} <= set(project)
    expected = {"migrate": "db init", "api": "api", "worker": "worker", "beat": "beat", "flower": "flower",
                "simulator": "simulator", "webhooks": "webhooks worker"}
    for name, svc in project.items():
        assert svc.get("image") == PROJECT_IMAGE and svc["build"]["context"] == ".", name
        command = svc.get("command")
        assert isinstance(command, list), f"{name}: command should be an exec-form list"
        path, _ = _parse_dialer(command)
        assert path == expected[name], f"{name} runs `dialer {path}`"


def test_dockerfile_default_command_and_user() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim\s*$", text, re.MULTILINE)
    cmd = json.loads(re.findall(r"^CMD\s+(\[.*\])\s*$", text, re.MULTILINE)[-1])
    path, params = _parse_dialer(cmd)
    assert (path, params["host"]) == ("api", "0.0.0.0")
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert re.search(r"pip install \.(\s|$)", text), "the project is installed without extras"
    assert "[dev]" not in text and not re.search(r"(?i)(secret|password|token)\s*=", text)
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {"**/.env", ".git", ".venv"} <= ignored


def test_no_literal_secrets(compose: dict[str, Any]) -> None:
    text = COMPOSE_PATH.read_text()
    for ref in ANY_VAR.findall(text):
        assert REQUIRED_VAR.fullmatch(ref), f"{ref}: use ${{VAR:?message}}, no defaults"
    blocks = [("x-dialer-env", compose["x-dialer-env"])]
    blocks += [(name, _env(svc)) for name, svc in compose["services"].items()]
    for where, env in blocks:
        for key, value in env.items():
            value = str(value)
            if SECRET_NAME.search(key):
                assert REQUIRED_VAR.fullmatch(value), f"{where}.{key} is a literal secret"
            for password in URL_PASSWORD.findall(value):
                assert REQUIRED_VAR.fullmatch(password), f"{where}.{key} has a literal password"


def test_environment_from_the_anchor(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    env = {str(k): str(v) for k, v in compose["x-dialer-env"].items()}
    assert env["DIALER_DATABASE_URL"].startswith("postgresql+psycopg://postgres:${POSTGRES_PASSWORD:?")
    assert env["DIALER_DATABASE_URL"].endswith("@postgres:5432/dialer")
    assert env["DIALER_REDIS_URL"] == "redis://redis:6379/0"
    assert env["DIALER_PUBLIC_URL"] == "http://api:8000"
    assert env["DIALER_ENVIRONMENT"] == "production"
    assert env["DIALER_SECRET_KEY"].startswith("${DIALER_SECRET_KEY:?")
    for name in ("migrate", "api", "beat"):
        assert _env(services[name]) == env, name
    worker = _env(services["worker"])
    assert int(worker.pop("DIALER_SENDER_NICE")) < 0, "the sender thread runs ahead of the chunk threads"
    assert worker.pop("DIALER_WORKER_METRICS_HOST") == "0.0.0.0", "prometheus scrapes it over the network"
    assert worker == env
    flower = _env(services["flower"])
    assert REQUIRED_VAR.fullmatch(flower.pop("DIALER_FLOWER_AUTH")), "Flower refuses to start without auth"
    assert flower == env
    assert services["postgres"]["environment"]["POSTGRES_DB"] == "dialer"


def test_worker_may_raise_its_sender_priority(services: dict[str, dict[str, Any]]) -> None:
    """The image runs as an unprivileged user: it can lower its nice value only as far as RLIMIT_NICE lets
    it (20 - limit), so the limit must reach the sender's configured nice value."""
    worker = services["worker"]
    nice = int(_env(worker)["DIALER_SENDER_NICE"])
    limit = worker["ulimits"]["nice"]
    limit = limit["soft"] if isinstance(limit, dict) else limit
    assert 20 - int(limit) <= nice


def test_backing_services_have_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    assert services["postgres"]["image"] == "postgres:15"
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert any(v.endswith(":/var/lib/postgresql/data") for v in services["postgres"]["volumes"])
    assert services["redis"]["image"] == "redis:7"
    assert "redis-cli ping" in " ".join(services["redis"]["healthcheck"]["test"])


def test_dependencies_wait_for_health_and_migration(compose: dict[str, Any],
                                                   services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        for dep, spec in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            condition = spec["condition"]
            assert condition in ALLOWED_CONDITIONS, f"{name}->{dep}: {condition}"
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} healthy: {dep} has no check"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["migrate"].get("restart") == "no"
    for name in ("api", "worker", "beat"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
    for volume in ("pgdata",):
        assert volume in compose["volumes"]


def test_ports_and_api_healthcheck(services: dict[str, dict[str, Any]]) -> None:
    from workers.entrypoints.api.app import create_app

    assert "8000:8000" in services["api"]["ports"]
    assert any(p.endswith(":5555:5555") or p == "5555:5555" for p in services["flower"]["ports"])
    assert any(p.endswith(":8765:8765") or p == "8765:8765" for p in services["simulator"]["ports"])
    check = services["api"]["healthcheck"]["test"]
    assert check[:3] == ["CMD", "python", "-c"] and "urllib" in check[3]
    path = re.search(r"http://127\.0\.0\.1:8000(/[^'\"]*)", check[3])
    assert path and path.group(1) in create_app().openapi()["paths"]
    _, api = _parse_dialer(services["api"]["command"])
    assert (api["host"], api["port"]) == ("0.0.0.0", 8000)


def test_beat_is_never_replicated(services: dict[str, dict[str, Any]]) -> None:
    beat = services["beat"]
    assert int((beat.get("deploy") or {}).get("replicas", 1)) <= 1
    assert int(beat.get("scale", 1)) <= 1
    worker = services["worker"]
    assert "container_name" not in worker and "hostname" not in worker, "a fixed name stops --scale worker=N"


def test_simulator_config_exists_and_loads(services: dict[str, dict[str, Any]]) -> None:
    from simulator.config import load_config

    _, params = _parse_dialer(services["simulator"]["command"])
    assert (params["host"], params["port"], params["speed"]) == ("0.0.0.0", 8765, 60.0)
    config = load_config(_host_file(params["config"]))
    providers = {a.provider for a in config.accounts.values()}
    assert providers == {"plivo", "vobiz", "tryvox", "voipbin", "bandwidth"}


def test_dialer_help_runs() -> None:
    script = Path(sys.executable).with_name("dialer")
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "workers.entrypoints.cli"]
    out = subprocess.run([*argv, "--help"], capture_output=True, text=True, timeout=30, cwd=REPO)
    assert out.returncode == 0, out.stderr
    for name in ("api", "worker", "beat", "flower", "simulator", "db"):
        assert re.search(rf"^\W*{name}\b", out.stdout, re.MULTILINE), f"`dialer --help` lists no {name}"


def test_simulator_starts_with_the_compose_config(services: dict[str, dict[str, Any]]) -> None:
    _, params = _parse_dialer(services["simulator"]["command"])
    raw = json.loads(_host_file(params["config"]).read_text())
    with start_simulator(raw, speed=params["speed"]) as sim:
        health = httpx.get(f"{sim.base_url}/_sim/health", timeout=5).raise_for_status().json()
    assert health["status"] == "ok" and health["speed"] == params["speed"]
    assert sorted(health["accounts"]) == sorted(a["auth_id"] for a in raw["accounts"])
    check = " ".join(services["simulator"]["healthcheck"]["test"])
    assert "127.0.0.1:8765/_sim/health" in check


def _compose_cli() -> list[str] | None:
    for argv in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(argv[0]) and subprocess.run([*argv, "version"], capture_output=True).returncode == 0:
            return argv
    return None


def test_docker_compose_config_validates() -> None:
    cli = _compose_cli()
    if cli is None:
        pytest.skip("no Docker Compose CLI installed")
    env = {**os.environ, "POSTGRES_PASSWORD": "pw-for-check", "DIALER_SECRET_KEY": "key-for-check"}
    out = subprocess.run([*cli, "-f", str(COMPOSE_PATH), "config", "-q"], capture_output=True, text=True,
                         env=env, timeout=30)
    assert out.returncode == 0, out.stderr
    env.pop("POSTGRES_PASSWORD")
    out = subprocess.run([*cli, "-f", str(COMPOSE_PATH), "config", "-q"], capture_output=True, text=True,
                         env=env, timeout=30)
    assert out.returncode != 0 and "POSTGRES_PASSWORD" in out.stderr


def test_worker_and_beat_have_health_checks_that_match_their_commands(
    services: dict[str, dict[str, Any]],
) -> None:
    from workers.runtime.celery_app import app

    _, worker = _parse_dialer(services["worker"]["command"])
    check = " ".join(services["worker"]["healthcheck"]["test"])
    node = worker["name"].replace("%h", "$$HOSTNAME")
    assert f"inspect ping -d {node} --timeout" in check, "the check pings this container's own worker"
    beat_check = " ".join(services["beat"]["healthcheck"]["test"])
    assert beat_check == "CMD dialer beat --check", "beat's check reads its lock and last run in Redis"
    # redbeat's scheduler, made to survive Redis losing its state (workers/runtime/beat_schedule.py)
    assert app.conf.beat_scheduler == "workers.runtime.beat_schedule:DialerBeatScheduler"


def test_prometheus_scrapes_the_api_and_every_worker(services: dict[str, dict[str, Any]]) -> None:
    from workers.metrics.worker_server import DEFAULT_PORT

    prometheus = services["prometheus"]
    mount = next(v for v in prometheus["volumes"] if v.endswith(":/etc/prometheus/prometheus.yml:ro"))
    config = yaml.safe_load((REPO / mount.split(":")[0]).read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["dialer-api"]["static_configs"][0]["targets"] == ["api:8000"]
    assert jobs["dialer-api"]["metrics_path"] == "/metrics"
    discovery = jobs["dialer-workers"]["dns_sd_configs"][0]
    assert discovery["names"] == ["worker"] and discovery["port"] == DEFAULT_PORT
    assert str(DEFAULT_PORT) in services["worker"]["expose"]


def test_every_scrape_sends_the_metrics_token_and_prometheus_is_given_it(
        compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    """/metrics (the API's, and the workers' when the token is set) answers 401 without the token."""
    prometheus = services["prometheus"]
    mount = next(v for v in prometheus["volumes"] if v.endswith(":/etc/prometheus/prometheus.yml:ro"))
    config = yaml.safe_load((REPO / mount.split(":")[0]).read_text())
    (secret,) = prometheus["secrets"]
    assert compose["secrets"][secret] == {"environment": "DIALER_METRICS_TOKEN"}
    for job in config["scrape_configs"]:
        assert job["authorization"] == {"type": "Bearer", "credentials_file": f"/run/secrets/{secret}"}, \
            job["job_name"]
    assert REQUIRED_VAR.fullmatch(compose["x-dialer-env"]["DIALER_METRICS_TOKEN"])


def test_only_the_api_is_published_beyond_loopback(services: dict[str, dict[str, Any]]) -> None:
    """Carriers must reach the API's callbacks; nothing else is for the network outside this host."""
    for name, svc in services.items():
        for port in svc.get("ports") or []:
            spec = str(port)
            if name == "api":
                continue
            assert spec.startswith("127.0.0.1:"), f"{name} publishes {spec} on every interface"
    assert not services["postgres"].get("ports") and not services["redis"].get("ports")
    assert not services["worker"].get("ports"), "the workers' /metrics are for prometheus only"


def test_grafana_is_provisioned_with_the_dashboard_and_every_panel_queries_a_real_metric(
    services: dict[str, dict[str, Any]], database_url: str, auth: dict[str, str]
) -> None:
    from fastapi.testclient import TestClient
    from prometheus_client import generate_latest

    from workers.entrypoints.api.app import create_app
    from workers.metrics import counters as metrics

    grafana = services["grafana"]
    assert REQUIRED_VAR.fullmatch(grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"])
    mounts = {v.split(":")[1]: REPO / v.split(":")[0] for v in grafana["volumes"] if v.startswith("./")}
    provisioning = mounts["/etc/grafana/provisioning"]
    datasource = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((provisioning / "dashboards/dialer.yml").read_text())["providers"][0]
    dashboard_file = next(path for target, path in mounts.items()
                          if target.startswith(provider["options"]["path"] + "/"))
    assert dashboard_file.parent == REPO / "deploy/grafana"
    dashboard = json.loads(dashboard_file.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    exprs += [v["query"]["query"] for v in dashboard["templating"]["list"]]
    queried = {name for expr in exprs for name in re.findall(r"\b(dialer_[a-z_]+)", expr)}
    with TestClient(create_app(apply_events=False)) as client:
        exported = client.get("/metrics", headers=auth).text
    metrics.SEND_LATENESS.observe(0.001)  # labelled counters appear once used
    metrics.count_request(1, "throttled")
    metrics.count_request(1, "accepted", 1, sent=1)
    exported += generate_latest(metrics.registry()).decode()
    suffixes = {"histogram": ("_bucket", "_count", "_sum")}
    types = re.findall(r"^# TYPE (dialer_[a-z_]+) (\w+)", exported, re.MULTILINE)
    names = {name + suffix for name, kind in types for suffix in suffixes.get(kind, ("",))}
    assert sorted(queried - names) == [], "the dashboard queries metrics nobody exports"
    assert {"dialer_cps_used", "dialer_live_calls", "dialer_queue_depth", "dialer_calls_placed_total"} \
        <= queried
