"""One settings class reads the environment: every DIALER_ variable is a field of Settings (so a `.env` file
sets it too), every range is checked at start with one line naming the variable, and no module of
campaigns/ or workers/ reads a DIALER_ variable from os.environ behind its back."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from campaigns.config import Settings, SettingsInvalid, get_settings
from workers.ratelimit.aimd import AimdPolicy

REPO = Path(__file__).resolve().parent.parent

# A value for each field, unlike its default, as written in `.env`, and the value it must arrive as.
SAMPLES: dict[str, tuple[str, object]] = {
    "database_url": ("postgresql+psycopg://dialer@db.example:5432/other", None),
    "redis_url": ("redis://cache.example:6379/3", None),
    "redis_prefix": ("elsewhere", None),
    "public_url": ("https://dialer.example/", "https://dialer.example"),
    "secret_key": ("s" * 40, None),
    "previous_secret_keys": ("old-one-" + "o" * 32 + ",older-one-" + "p" * 32, None),
    "environment": ("staging", None),
    "callback_grace_s": ("120", 120),
    "max_callback_bytes": ("1024", 1024),
    "max_upload_bytes": ("2048", 2048),
    "max_json_bytes": ("4096", 4096),
    "body_read_timeout_s": ("2.5", 2.5),
    "min_upload_bytes_per_s": ("1000", 1000),
    "max_rows": ("10", 10),
    "max_field_bytes": ("64", 64),
    "max_line_bytes": ("128", 128),
    "loader_workers": ("3", 3),
    "flower_auth": ("ops:pass", None),
    "worker_metrics_port": ("9900", 9900),
    "worker_metrics_host": ("0.0.0.0", None),
    "metrics_token": ("m" * 32, None),
    "metrics_refresh_s": ("2.5", 2.5),
    "prune_older_than": ("30d", None),
    "rejected_callbacks_per_hour": ("10", 10),
    "rejected_callback_body_bytes": ("512", 512),
    "unmatched_event_raw_bytes": ("1024", 1024),
    "send_lateness_dir": ("/tmp/lateness-samples", None),
    "aimd_factor": ("0.8", 0.8),
    "aimd_confirm_s": ("2.5", 2.5),
    "circuit_window_s": ("5", 5.0),
    "circuit_min_failures": ("3", 3),
    "circuit_failure_ratio": ("0.8", 0.8),
    "circuit_cooldown_s": ("2.5", 2.5),
    "circuit_auth_cooldown_s": ("60", 60.0),
    "circuit_cooldown_max_s": ("120", 120.0),
    "circuit_probes": ("2", 2),
    "circuit_probe_deadline_s": ("45", 45.0),
    "sender_nice": ("-10", -10),
    "webhook_timeout_s": ("2.5", 2.5),
    "webhook_concurrency": ("4", 4),
    "webhook_pass_s": ("10", 10.0),
    "webhook_backoff_base_s": ("0.5", 0.5),
    "webhook_backoff_max_s": ("60", 60.0),
    "webhook_retry_for_s": ("3600", 3600.0),
}

# An out-of-range (or unreadable) value for each checked field.
OUT_OF_RANGE: list[tuple[str, str]] = [
    ("callback_grace_s", "-1"),
    ("max_callback_bytes", "0"),
    ("max_upload_bytes", "-5"),
    ("max_json_bytes", "0"),
    ("body_read_timeout_s", "0"),
    ("body_read_timeout_s", "inf"),
    ("min_upload_bytes_per_s", "0"),
    ("max_rows", "0"),
    ("max_field_bytes", "0"),
    ("max_line_bytes", "0"),
    ("loader_workers", "-1"),
    ("worker_metrics_port", "65536"),
    ("worker_metrics_port", "-1"),
    ("worker_metrics_port", "metrics"),
    ("worker_metrics_host", ""),
    ("metrics_token", "short"),
    ("metrics_refresh_s", "0"),
    ("metrics_refresh_s", "inf"),
    ("prune_older_than", "30"),
    ("prune_older_than", "0d"),
    ("rejected_callbacks_per_hour", "-1"),
    ("rejected_callback_body_bytes", "-1"),
    ("unmatched_event_raw_bytes", "-1"),
    ("aimd_factor", "2"),
    ("aimd_factor", "0.3"),
    ("aimd_factor", "nan"),
    ("aimd_confirm_s", "-0.5"),
    ("aimd_confirm_s", "inf"),
    ("circuit_failure_ratio", "0"),
    ("circuit_failure_ratio", "1.5"),
    ("circuit_probes", "0"),
    ("sender_nice", "-21"),
    ("sender_nice", "20"),
    ("webhook_timeout_s", "0"),
    ("webhook_timeout_s", "61"),
    ("webhook_concurrency", "0"),
    ("webhook_pass_s", "inf"),
    ("webhook_backoff_base_s", "0"),
    ("webhook_retry_for_s", "-1"),
]


@pytest.fixture()
def fresh_settings() -> Iterator[None]:
    """get_settings() is cached per process: read afresh here, and leave no test's values behind."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _variable(field: str) -> str:
    return f"DIALER_{field.upper()}"


def test_every_field_has_a_sample() -> None:
    assert set(SAMPLES) == set(Settings.model_fields)


@pytest.mark.parametrize("field", sorted(Settings.model_fields))
def test_every_setting_can_come_from_a_dot_env_file(
    field: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_settings: None
) -> None:
    written, expected = SAMPLES[field]
    (tmp_path / ".env").write_text(f"{_variable(field)}={written}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(_variable(field), raising=False)
    value = getattr(get_settings(), field)
    assert value == (written if expected is None else expected)
    assert value != Settings.model_fields[field].default


@pytest.mark.parametrize(("field", "value"), OUT_OF_RANGE)
def test_an_out_of_range_setting_stops_the_process_naming_its_variable(
    field: str, value: str, monkeypatch: pytest.MonkeyPatch, fresh_settings: None
) -> None:
    monkeypatch.setenv(_variable(field), value)
    with pytest.raises(SettingsInvalid) as caught:
        get_settings()
    line = str(caught.value)
    assert line.startswith("invalid settings: ") and f"{_variable(field)}: " in line
    assert "\n" not in line


@pytest.mark.parametrize("factor", [0.45, 0.5, 0.7, 0.9, 0.95])
def test_the_settings_accept_exactly_the_aimd_factors_the_policy_accepts(
    factor: float, monkeypatch: pytest.MonkeyPatch, fresh_settings: None
) -> None:
    monkeypatch.setenv("DIALER_AIMD_FACTOR", str(factor))
    try:
        AimdPolicy(factor=factor)
        policy_accepts = True
    except ValueError:
        policy_accepts = False
    try:
        settings_accept = get_settings().aimd_factor == factor
    except SettingsInvalid:
        settings_accept = False
    assert settings_accept == policy_accepts


def _string_constants(tree: ast.Module) -> dict[str, str]:
    """Module-level NAME = "text" assignments, so a read through a named constant is seen too."""
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            if isinstance(node.value.value, str):
                found.update({t.id: node.value.value for t in node.targets if isinstance(t, ast.Name)})
    return found


def _is_environ(node: ast.expr) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
        isinstance(node, ast.Name) and node.id == "environ")


def _read_keys(tree: ast.Module) -> Iterator[tuple[int, ast.expr]]:
    """The key of every read of one environment variable: os.environ[k] (read), os.environ.get(k),
    os.getenv(k). Handing the whole environment to a child ({**os.environ}) and writes are not reads."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and _is_environ(node.value) and isinstance(node.ctx, ast.Load):
            yield node.lineno, node.slice
        elif isinstance(node, ast.Call) and node.args and isinstance(node.func, ast.Attribute | ast.Name):
            func = node.func
            environ_get = isinstance(func, ast.Attribute) and func.attr in {"get", "pop"} and _is_environ(
                func.value)
            getenv = (func.attr if isinstance(func, ast.Attribute) else func.id) == "getenv"
            if environ_get or getenv:
                yield node.lineno, node.args[0]


def dialer_reads_outside_settings(source: str) -> list[str]:
    """Each line of `source` that reads a DIALER_ variable, or one it cannot name, from the environment."""
    tree = ast.parse(source)
    constants = _string_constants(tree)
    found = []
    for line, key in _read_keys(tree):
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            name: str | None = key.value
        else:
            name = constants.get(key.id) if isinstance(key, ast.Name) else None
        if name is None or name.startswith("DIALER_"):
            found.append(f"line {line}: {name or ast.unparse(key)}")
    return found


@pytest.mark.parametrize("source", [
    'import os\nport = os.environ.get("DIALER_WORKER_METRICS_PORT", "9808")\n',
    'import os\nNAME = "DIALER_BEAT_SCHEDULE"\nschedule = os.environ[NAME]\n',
    'from os import getenv\nfolder = getenv("DIALER_SEND_LATENESS_DIR")\n',
    'import os\nkey = "DIALER_" + "X"\nvalue = os.environ.get(key)\n',
])
def test_the_scan_finds_a_read_of_a_dialer_variable(source: str) -> None:
    assert dialer_reads_outside_settings(source)


def test_the_scan_lets_writes_hand_offs_and_other_variables_pass() -> None:
    source = ('import os\nos.environ["DIALER_PUBLIC_URL"] = "x"\nenv = {**os.environ}\n'
              'multi = os.environ.get("PROMETHEUS_MULTIPROC_DIR")\n')
    assert dialer_reads_outside_settings(source) == []


def test_no_module_reads_a_dialer_variable_except_through_settings() -> None:
    found = [f"{path.relative_to(REPO)} {read}"
             for package in ("campaigns", "workers") for path in sorted((REPO / package).rglob("*.py"))
             for read in dialer_reads_outside_settings(path.read_text())]
    assert found == []
