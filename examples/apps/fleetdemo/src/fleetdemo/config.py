"""Settings read from environment variables only (written to /etc/fleetdemo/fleetdemo.env)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from fleetdemo import __version__

MIN_SECRET_KEY_LENGTH = 16
# FLEETDEMO_PROFILE values: a seed system's health contract (see fleetdemo.health and the README).
PROFILES = ("playpark", "brownie", "fairedge", "loyalty", "dietplanner")


class ConfigError(RuntimeError):
    """A required setting is missing or invalid; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str
    secret_key: str
    celery_broker_url: str
    app_version: str = __version__
    log_dir: str | None = None
    profile: str = "default"
    environment: str = "production"

    def __repr__(self) -> str:  # never leak credentials into logs or tracebacks
        return (
            f"Settings(app_version={self.app_version!r}, log_dir={self.log_dir!r}, "
            f"profile={self.profile!r})"
        )


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name} is required but not set")
    return value


def _check_url(name: str, value: str, schemes: tuple[str, ...]) -> str:
    parts = urlsplit(value)
    if parts.scheme not in schemes or not (parts.hostname or parts.path):
        raise ConfigError(f"{name} must be a URL with scheme {' or '.join(schemes)}")
    return value


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from ``env`` (default: os.environ); raise ConfigError on bad input."""
    env = os.environ if env is None else env
    database_url = _check_url(
        "DATABASE_URL",
        _required(env, "DATABASE_URL"),
        ("postgresql", "postgresql+psycopg"),
    )
    if urlsplit(database_url).scheme == "postgresql":
        database_url = "postgresql+psycopg" + database_url[len("postgresql") :]
    redis_url = _check_url("REDIS_URL", _required(env, "REDIS_URL"), ("redis", "rediss", "unix"))
    secret_key = _required(env, "SECRET_KEY")
    if len(secret_key) < MIN_SECRET_KEY_LENGTH:
        raise ConfigError(f"SECRET_KEY must be at least {MIN_SECRET_KEY_LENGTH} characters long")
    broker_url = env.get("CELERY_BROKER_URL", "").strip() or redis_url
    profile = env.get("FLEETDEMO_PROFILE", "").strip() or "default"
    if profile != "default" and profile not in PROFILES:
        raise ConfigError(f"FLEETDEMO_PROFILE must be one of {', '.join(PROFILES)} (or unset)")
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        secret_key=secret_key,
        celery_broker_url=broker_url,
        app_version=env.get("APP_VERSION", "").strip() or __version__,
        log_dir=env.get("LOG_DIR", "").strip() or None,
        profile=profile,
        environment=env.get("ENVIRONMENT", "").strip() or "production",
    )


def settings_or_exit() -> Settings:
    """Load settings for a long-running process; exit with a clear message if invalid."""
    try:
        return load_settings()
    except ConfigError as exc:
        print(f"fleetdemo: configuration error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
