from __future__ import annotations

import pytest

pytest.importorskip("fastapi", reason="fleetdemo's dependencies are not installed")

# Closed local ports: every dependency check fails fast with "connection refused".
UNREACHABLE_ENV = {
    "DATABASE_URL": "postgresql+psycopg://fleetdemo:pw@127.0.0.1:1/fleetdemo",
    "REDIS_URL": "redis://127.0.0.1:1/0",
    "SECRET_KEY": "test-secret-key-0123456789",
}

# Diet Planner's form (examples/dietplanner): POSTGRES_* instead of DATABASE_URL, and no Redis.
SEED_ENV = {
    "POSTGRES_HOST": "127.0.0.1",
    "POSTGRES_PORT": "1",
    "POSTGRES_DB": "diet_planner",
    "POSTGRES_USER": "diet_user",
    "POSTGRES_PASSWORD": "p@ss:w/rd%20 #?&",  # every character a URL would misread
    "SECRET_KEY": UNREACHABLE_ENV["SECRET_KEY"],
}


@pytest.fixture
def unreachable_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name in (
        "CELERY_BROKER_URL",
        "APP_VERSION",
        "LOG_DIR",
        "PROMETHEUS_MULTIPROC_DIR",
        "FLEETDEMO_PROFILE",
        *SEED_ENV,
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in UNREACHABLE_ENV.items():
        monkeypatch.setenv(name, value)
    return dict(UNREACHABLE_ENV)
