from __future__ import annotations

import pytest

from fleetdemo import __version__
from fleetdemo.admin import main as admin_main
from fleetdemo.config import ConfigError, load_settings

from .conftest import UNREACHABLE_ENV


@pytest.mark.parametrize("name", ["DATABASE_URL", "SECRET_KEY"])
def test_missing_required_variable_is_named(name: str) -> None:
    env = {k: v for k, v in UNREACHABLE_ENV.items() if k != name}
    with pytest.raises(ConfigError, match=name):
        load_settings(env)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SECRET_KEY", "short"),
        ("DATABASE_URL", "mysql://x@localhost/db"),
        ("REDIS_URL", "http://localhost:6379"),
    ],
)
def test_invalid_variable_is_named(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings({**UNREACHABLE_ENV, name: value})


def test_defaults_and_overrides() -> None:
    settings = load_settings(UNREACHABLE_ENV)
    assert settings.celery_broker_url == UNREACHABLE_ENV["REDIS_URL"]
    assert settings.app_version == __version__ == "1.0.0"
    assert settings.log_dir is None
    assert "pw" not in repr(settings)

    settings = load_settings(
        {
            **UNREACHABLE_ENV,
            "DATABASE_URL": "postgresql://u:p@db/x",
            "CELERY_BROKER_URL": "redis://broker:6379/1",
            "APP_VERSION": "1.0.0-rc1",
            "LOG_DIR": "/var/log/fleetdemo",
        }
    )
    assert settings.database_url == "postgresql+psycopg://u:p@db/x"
    assert settings.celery_broker_url == "redis://broker:6379/1"
    assert settings.app_version == "1.0.0-rc1"
    assert settings.log_dir == "/var/log/fleetdemo"


def test_check_config_command(
    unreachable_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert admin_main(["check-config"]) == 0
    assert "configuration OK" in capsys.readouterr().out

    monkeypatch.delenv("SECRET_KEY")
    with pytest.raises(SystemExit) as exc:
        admin_main(["check-config"])
    assert exc.value.code != 0
    assert "SECRET_KEY" in str(exc.value.code)


def test_migrate_fails_cleanly_when_database_is_down(
    unreachable_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert admin_main(["migrate"]) == 1
    err = capsys.readouterr().err
    assert "migration failed" in err
    assert "Running upgrade" not in err
