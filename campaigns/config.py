"""Settings read from the environment (prefix DIALER_) or a .env file, checked and built once per process on
first use."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from campaigns.durations import parse_duration

DEVELOPMENT_SECRET = "development-only-secret-change-me"
# The one environment that accepts DEVELOPMENT_SECRET (and Flower without auth, a plain-http public URL, http
# audio). It must be named: the default is production, so a deployment that forgets the variable fails closed.
DEVELOPMENT = "development"
DEFAULT_ENVIRONMENT = "production"
# 32 characters: a key anyone can brute-force forges every account's callbacks (TryVox, VoIPbin, Bandwidth).
MIN_SECRET_KEY_CHARS = 32
# A metrics token anyone can guess reads every account's volumes.
MIN_METRICS_TOKEN_CHARS = 24
# The port docker-compose.yml exposes on each worker container and prometheus scrapes.
DEFAULT_WORKER_METRICS_PORT = 9808

# Ranges checked when the settings are read, so a bad value stops the process at start with one line naming
# the variable instead of failing later in the code that uses it.
Port = Annotated[int, Field(ge=0, le=65535)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeSeconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
PositiveSeconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class Settings(BaseSettings):
    """Every knob of the dialer; each one documented in README.md."""

    model_config = SettingsConfigDict(env_prefix="DIALER_", env_file=".env", extra="ignore")

    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/dialer"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Prefix of every Redis key the limiters write, so several deployments (or test sessions) share a server.
    redis_prefix: str = "dialer"
    # The base URL carriers call back; callback signatures are checked against it.
    public_url: str = "http://127.0.0.1:8000"
    # The root of every derived key (campaigns.keys); the model check below refuses a weak one.
    secret_key: str = DEVELOPMENT_SECRET
    # Secrets replaced by a rotation, comma-separated: still accepted, never used for anything new.
    previous_secret_keys: str = ""
    # An open set, not a Literal: "development", set explicitly, allows the development secret and Flower
    # without auth; every other name (production, staging, ...) and the unset default refuse both.
    environment: str = DEFAULT_ENVIRONMENT
    # How long a callback URL handed to a carrier stays valid past the call's own time limit: the carrier's
    # retries of a late callback. A signature that covers only the URL (Vobiz) can be replayed this long, so
    # its nonce is remembered this long too.
    callback_grace_s: NonNegativeInt = 3600
    # Largest callback body read; larger ones get 413 before any parsing.
    max_callback_bytes: PositiveInt = 65536
    # Largest CSV upload through the API (counted while streaming, after the API key is checked).
    max_upload_bytes: PositiveInt = 512 * 1024 * 1024
    # Largest body of every other API request (JSON in practice). This and max_upload_bytes are checked by
    # workers.entrypoints.api.request_guard before the handler reads a byte.
    max_json_bytes: PositiveInt = 65536
    # A request body must have arrived this many seconds after its handler starts reading it, or the request
    # gets 408 and its connection is closed: a client dripping bytes holds no connection for long. An upload
    # gets one more second per `min_upload_bytes_per_s` received, so a large CSV on a slow link still loads.
    body_read_timeout_s: PositiveSeconds = 10.0
    min_upload_bytes_per_s: PositiveInt = 16384

    # Loader limits: a bad file is refused whole rather than half-loaded.
    max_rows: PositiveInt = 5_000_000
    max_field_bytes: PositiveInt = 4096
    max_line_bytes: PositiveInt = 65536
    loader_workers: NonNegativeInt = 0  # 0: one parser process per core

    # Flower's basic auth, user:password[,user2:password2]; `dialer flower` refuses to start without it
    # outside development (workers.entrypoints.flower_auth).
    flower_auth: str | None = None
    # Each Celery worker's /metrics port (workers.metrics.worker_server); 0 turns the exporter off, and a
    # worker that finds the port taken tries the next ones.
    worker_metrics_port: Port = DEFAULT_WORKER_METRICS_PORT
    # The address each worker's exporter binds: loopback unless set (docker-compose.yml sets 0.0.0.0 on the
    # compose network, where only Prometheus reaches it, and publishes no port).
    worker_metrics_host: str = Field(default="127.0.0.1", min_length=1)
    # The bearer token that reads /metrics (the API's, and each worker's when set) besides any API key;
    # unset, the API's /metrics takes API keys only and the workers' exporters ask for nothing.
    metrics_token: str | None = Field(default=None, min_length=MIN_METRICS_TOKEN_CHARS)
    # The API's /metrics reads the dialer's state at most this often; scrapes in between share the reading.
    metrics_refresh_s: float = Field(default=5.0, gt=0, le=300, allow_inf_nan=False)
    # Retention (`dialer prune`, campaigns.retention): the beat task prunes daily what is older than this
    # ("30d", "12h"); unset, the task is off.
    prune_older_than: str | None = None
    # Authenticated callbacks we could not understand are kept (rejected_callback) at most this many per
    # account and clock hour; past it they are only counted (rejected_callback_hour). 0 keeps none.
    rejected_callbacks_per_hour: NonNegativeInt = 100
    # Bytes of a rejected callback's body kept (the rest is cut, and how much was cut is said).
    rejected_callback_body_bytes: NonNegativeInt = 4096
    # Bytes of a callback's raw fields kept when its event matches no call (made-up or not yet recorded ids).
    unmatched_event_raw_bytes: NonNegativeInt = 4096
    # For benchmarks: a directory where each worker process appends its raw send-lateness samples
    # (workers.metrics.send_lateness); unset or empty, none are written.
    send_lateness_dir: str | None = None

    # Outbound webhooks (workers.housekeeping.webhook_delivery): each POST's timeout, how many are in flight
    # at once in a delivery pass, how long a pass goes on sending, the backoff between a failed delivery's
    # tries (half to all of base * 2^(tries-1), at most max) and how long after its event it is tried at all.
    webhook_timeout_s: float = Field(default=5.0, gt=0, le=60, allow_inf_nan=False)
    webhook_concurrency: int = Field(default=8, ge=1, le=64)
    webhook_pass_s: float = Field(default=20.0, gt=0, le=90, allow_inf_nan=False)
    webhook_backoff_base_s: PositiveSeconds = 5.0
    webhook_backoff_max_s: PositiveSeconds = 3600.0
    webhook_retry_for_s: PositiveSeconds = 86400.0

    # Adaptive rate after a carrier's 429 (workers.ratelimit.aimd): the cut, and the window in which a second
    # 429 must follow the first for any cut at all (0: every 429 cuts). An isolated 429 from a carrier exactly
    # at budget costs no cut; one whose budget is really lower answers 429 again within seconds, and that
    # one cuts. bench/RESULTS.md ("AIMD after an isolated 429") has the measurement and the arithmetic.
    # The factor's range is the one AimdPolicy accepts (tests/test_settings_env.py holds the two together).
    aimd_factor: float = Field(default=0.7, ge=0.5, le=0.9, allow_inf_nan=False)
    aimd_confirm_s: NonNegativeSeconds = 5.0
    # Nice value of each worker process's sender thread (workers.dialing.timed_sender), so that on a busy host
    # the OS runs it promptly at each booked instant. Negative values need CAP_SYS_NICE or RLIMIT_NICE
    # (docker-compose.yml sets the limit); refused, the sender keeps the process's priority and says so once
    # in the log. The range is the OS's own.
    sender_nice: int = Field(default=0, ge=-20, le=19)

    # Each account's circuit breaker (campaigns.circuit_rules, docs/DESIGN.md "Failover and pooling"): it
    # opens when, within the last CIRCUIT_WINDOW_S (or its last two seconds), at least CIRCUIT_MIN_FAILURES
    # dials failed (5xx, timeouts, refused connections) and they were at least CIRCUIT_FAILURE_RATIO of its
    # dials; at once on 401/403/404 or 402. Open, it takes no new attempts for its cool-down
    # (CIRCUIT_COOLDOWN_S; CIRCUIT_AUTH_COOLDOWN_S after credentials or balance were refused), doubled on each
    # reopening up to CIRCUIT_COOLDOWN_MAX_S; then CIRCUIT_PROBES attempts probe it (half-open) and it closes
    # when they all succeed. A probe left without a result for CIRCUIT_PROBE_DEADLINE_S is sent again.
    circuit_window_s: PositiveSeconds = 10.0
    circuit_min_failures: PositiveInt = 5
    circuit_failure_ratio: float = Field(default=0.5, gt=0, le=1, allow_inf_nan=False)
    circuit_cooldown_s: PositiveSeconds = 30.0
    circuit_auth_cooldown_s: PositiveSeconds = 300.0
    circuit_cooldown_max_s: PositiveSeconds = 600.0
    circuit_probes: PositiveInt = 3
    circuit_probe_deadline_s: PositiveSeconds = 20.0

    @field_validator("prune_older_than")
    @classmethod
    def _a_duration(cls, value: str | None) -> str | None:
        if value is not None and value.strip():
            parse_duration(value)
            return value.strip()
        return None

    @field_validator("public_url")
    @classmethod
    def _strip_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @model_validator(mode="after")
    def _secret_keys_fit_for_the_environment(self) -> Settings:
        # After the whole model is read: a field validator neither sees a later field (environment) nor
        # runs on a default, which let production start with the published development key. Left unset, the
        # environment is production (fail closed): the line says so, and how a development machine says so.
        defaulted = "environment" not in self.model_fields_set
        refusal = secret_key_refusal(self.secret_key, environment=self.environment, defaulted=defaulted)
        if refusal is not None:
            raise ValueError(f"DIALER_SECRET_KEY {refusal}; set one of your own"
                             " (python -c 'import secrets; print(secrets.token_urlsafe(48))')"
                             + (", or DIALER_ENVIRONMENT=development on a development machine"
                                if defaulted and self.secret_key == DEVELOPMENT_SECRET else ""))
        # A previous key still verifies everything derived from it (keys.secrets_newest_first), so it is as
        # much a root secret as the current one and gets the same rule. The entry is named by position:
        # the message reaches logs, and the key must not.
        previous = self.previous_secrets
        for position, key in enumerate(previous, start=1):
            refusal = secret_key_refusal(key, environment=self.environment, defaulted=defaulted)
            if refusal is not None:
                raise ValueError(f"DIALER_PREVIOUS_SECRET_KEYS entry {position} of {len(previous)} {refusal}"
                                 " (remove it: values made under it would still be accepted)")
        return self

    @property
    def development(self) -> bool:
        """DIALER_ENVIRONMENT=development, set explicitly: the published key and local shortcuts allowed."""
        return self.environment == DEVELOPMENT

    @property
    def previous_secrets(self) -> list[str]:
        return [s.strip() for s in self.previous_secret_keys.split(",") if s.strip()]

    @property
    def psycopg_url(self) -> str:
        """The database URL in the form psycopg.connect() takes (no SQLAlchemy driver suffix)."""
        return self.database_url.replace("postgresql+psycopg://", "postgresql://", 1)


def secret_key_refusal(key: str, *, environment: str, defaulted: bool = False) -> str | None:
    """Why `key` may not be a root secret (current or previous) in `environment`, or None if it may;
    `defaulted`: the operator left DIALER_ENVIRONMENT unset."""
    if key == DEVELOPMENT_SECRET:
        if environment == DEVELOPMENT:
            return None
        where = (f"DIALER_ENVIRONMENT is unset (so {environment})" if defaulted
                 else f"DIALER_ENVIRONMENT={environment}")
        return f"must be a secret of your own when {where}, not the published development key"
    if len(key) < MIN_SECRET_KEY_CHARS:
        return f"is {len(key)} characters; at least {MIN_SECRET_KEY_CHARS} are needed"
    return None


class SettingsInvalid(SystemExit):
    """The environment's settings are unusable; its message is the one line an operator needs."""


def settings_error_line(exc: ValidationError) -> str:
    """A pydantic validation error as one line: field, then the reason."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        parts.append(f"DIALER_{where.upper()}: {message}" if where else message)
    return "invalid settings: " + "; ".join(parts)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings; an unusable environment ends the process with one line (not a traceback)."""
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsInvalid(settings_error_line(exc)) from None
