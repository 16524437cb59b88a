"""Settings read from the environment (prefix DIALER_), built once per process on first use."""

from __future__ import annotations

from functools import lru_cache

from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEVELOPMENT_SECRET = "development-only-secret-change-me"


class Settings(BaseSettings):
    """Every knob of the dialer; each one documented in README.md."""

    model_config = SettingsConfigDict(env_prefix="DIALER_", env_file=".env", extra="ignore")

    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/dialer"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Prefix of every Redis key the limiters write, so several deployments (or test sessions) share a server.
    redis_prefix: str = "dialer"
    public_url: str = "http://127.0.0.1:8000"
    secret_key: str = DEVELOPMENT_SECRET
    environment: str = "development"

    # Loader limits: a bad file is refused whole rather than half-loaded.
    max_rows: int = 5_000_000
    max_field_bytes: int = 4096
    max_line_bytes: int = 65536
    loader_workers: int = 0  # 0: one parser process per core

    # Adaptive rate after a carrier's 429 (workers.ratelimit.aimd): the cut, and the window in which a second
    # 429 must follow the first for any cut at all (0: every 429 cuts). An isolated 429 from a carrier exactly
    # at budget costs no cut; one whose budget is really lower answers 429 again within seconds, and that
    # one cuts. bench/RESULTS.md (issue 13) has the measurement and the arithmetic.
    aimd_factor: float = 0.7
    aimd_confirm_s: float = 5.0

    @field_validator("public_url")
    @classmethod
    def _strip_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("secret_key")
    @classmethod
    def _secret_key_set_outside_development(cls, value: str, info) -> str:  # type: ignore[no-untyped-def]
        if value == DEVELOPMENT_SECRET and info.data.get("environment", "development") != "development":
            raise ValueError("DIALER_SECRET_KEY must be set outside development")
        return value

    @property
    def psycopg_url(self) -> str:
        """The database URL in the form psycopg.connect() takes (no SQLAlchemy driver suffix)."""
        return self.database_url.replace("postgresql+psycopg://", "postgresql://", 1)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
