"""Settings read from environment variables only (written to /etc/fleetdemo/fleetdemo.env)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from fleetdemo import __version__

MIN_SECRET_KEY_LENGTH = 16
# FLEETDEMO_PROFILE values: a seed system's health contract (see fleetdemo.health and the README).
PROFILES = ("playpark", "brownie", "fairedge", "loyalty", "dietplanner")
# The other way to name the database (Diet Planner's guide): DATABASE_URL is built from these.
POSTGRES_REQUIRED = ("POSTGRES_HOST", "POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD")
POSTGRES_DEFAULT_PORT = "5432"
REDIS_NOT_CONFIGURED = "redis not configured: REDIS_URL is not set"


class ConfigError(RuntimeError):
    """A required setting is missing or invalid; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str | None  # None: the deployment has no Redis (health bodies omit it)
    secret_key: str
    celery_broker_url: str | None
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


def _database_url(env: Mapping[str, str]) -> str:
    """DATABASE_URL, or a psycopg URL built from POSTGRES_* when DATABASE_URL is unset."""
    if env.get("DATABASE_URL", "").strip():
        return _required(env, "DATABASE_URL")
    given = {name: env.get(name, "").strip() for name in POSTGRES_REQUIRED}
    both = f"set DATABASE_URL or {', '.join(POSTGRES_REQUIRED)} (+ POSTGRES_PORT, default 5432)"
    if not any(given.values()):
        raise ConfigError(f"DATABASE_URL is required but not set ({both})")
    missing = [name for name, value in given.items() if not value]
    if missing:
        raise ConfigError(f"DATABASE_URL is not set and {', '.join(missing)} missing: {both}")
    port = env.get("POSTGRES_PORT", "").strip() or POSTGRES_DEFAULT_PORT
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError("POSTGRES_PORT must be a port number (1-65535)")
    host = given["POSTGRES_HOST"]
    password = env["POSTGRES_PASSWORD"]  # as given: spaces may be part of it
    userinfo = f"{quote(given['POSTGRES_USER'], safe='')}:{quote(password, safe='')}"
    database = quote(given["POSTGRES_DB"], safe="")
    if host.startswith("/"):  # a Unix socket directory
        return (
            f"postgresql+psycopg://{userinfo}@/{database}?host={quote(host, safe='')}&port={port}"
        )
    if ":" in host and not host.startswith("["):  # IPv6 literal
        host = f"[{host}]"
    return f"postgresql+psycopg://{userinfo}@{host}:{port}/{database}"


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from ``env`` (default: os.environ); raise ConfigError on bad input."""
    env = os.environ if env is None else env
    database_url = _check_url(
        "DATABASE_URL",
        _database_url(env),
        ("postgresql", "postgresql+psycopg"),
    )
    if urlsplit(database_url).scheme == "postgresql":
        database_url = "postgresql+psycopg" + database_url[len("postgresql") :]
    redis_url = env.get("REDIS_URL", "").strip() or None
    if redis_url is not None:
        _check_url("REDIS_URL", redis_url, ("redis", "rediss", "unix"))
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


def redis_url_or_exit(settings: Settings, process: str) -> str:
    """REDIS_URL for a process that cannot run without Redis (the Celery worker and beat)."""
    if settings.redis_url is None:
        print(
            f"fleetdemo: {process}: Redis is required (broker and task results): "
            f"{REDIS_NOT_CONFIGURED}",
            file=sys.stderr,
            flush=True,
        )
        raise SystemExit(1)
    return settings.redis_url
