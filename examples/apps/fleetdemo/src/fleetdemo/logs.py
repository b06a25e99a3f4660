"""Logging for the ``fleetdemo`` logger: stderr (journald) plus an optional rotated file."""

from __future__ import annotations

import logging
import os
import sys
from logging.handlers import WatchedFileHandler
from pathlib import Path

LOGGER_NAME = "fleetdemo"
LOG_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"


def setup_logging(log_dir: str | None = None, level: int = logging.INFO) -> logging.Logger:
    """Configure the ``fleetdemo`` logger once per process (idempotent).

    With ``log_dir`` the logger also writes ``<log_dir>/app.log`` through a
    WatchedFileHandler, so logrotate can move the file without a restart.
    """
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(level)
    logger.propagate = False
    formatter = logging.Formatter(LOG_FORMAT)
    if not any(getattr(h, "_fleetdemo", False) for h in logger.handlers):
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(formatter)
        stream._fleetdemo = True  # type: ignore[attr-defined]
        logger.addHandler(stream)
    if log_dir:
        path = Path(log_dir) / "app.log"
        known = {getattr(h, "baseFilename", None) for h in logger.handlers}
        if os.path.abspath(path) not in known:
            path.parent.mkdir(parents=True, exist_ok=True)
            file_handler = WatchedFileHandler(path, encoding="utf-8")
            file_handler.setFormatter(formatter)
            logger.addHandler(file_handler)
    return logger
