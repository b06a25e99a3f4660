"""ASGI entry point: ``gunicorn -k uvicorn_worker.UvicornWorker fleetdemo.main:app``.

Settings are validated at import; a missing or invalid variable stops the worker from booting
(gunicorn then exits with "Worker failed to boot") and the error names the variable.
"""

from fleetdemo.app import create_app
from fleetdemo.config import load_settings

app = create_app(load_settings())
