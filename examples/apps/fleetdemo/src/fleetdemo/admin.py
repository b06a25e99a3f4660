"""``fleetdemo-admin``: operator commands (``migrate``, ``check-config``, ``version``)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from importlib import resources

from alembic import command
from alembic.config import Config
from alembic.util import CommandError
from sqlalchemy.exc import SQLAlchemyError

from fleetdemo import __version__
from fleetdemo.clients import make_engine
from fleetdemo.config import ConfigError, Settings, load_settings


def migrations_dir() -> str:
    """Filesystem path of the Alembic scripts shipped inside the package."""
    return str(resources.files("fleetdemo").joinpath("migrations"))


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", migrations_dir())
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def _configure_logging() -> None:
    # Same shape as alembic's own console output ("INFO  [alembic.runtime.migration] ...");
    # the deploy role greps stderr for "Running upgrade" to decide whether anything changed.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)-5.5s [%(name)s] %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.INFO)


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        raise SystemExit(f"fleetdemo-admin: configuration error: {exc}") from None


def cmd_migrate(_: argparse.Namespace) -> int:
    settings = _settings()
    _configure_logging()
    cfg = alembic_config(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except (CommandError, SQLAlchemyError, OSError) as exc:
        print(f"fleetdemo-admin: migration failed: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    return 0


def cmd_check_config(_: argparse.Namespace) -> int:
    settings = _settings()
    print(f"fleetdemo {settings.app_version}: configuration OK")
    return 0


def cmd_version(_: argparse.Namespace) -> int:
    print(__version__)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fleetdemo-admin", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply database migrations (alembic upgrade head)").set_defaults(
        func=cmd_migrate
    )
    sub.add_parser("check-config", help="validate environment settings").set_defaults(
        func=cmd_check_config
    )
    sub.add_parser("version", help="print the package version").set_defaults(func=cmd_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
