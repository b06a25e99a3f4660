"""WSGI entry point: ``gunicorn --worker-class sync fleetdemo.wsgi:application``.

Settings are validated at import, as in fleetdemo.main: a missing or invalid variable (an unknown
FLEETDEMO_PROFILE too) stops the worker from booting and the error names the variable.
"""

from fleetdemo.config import load_settings
from fleetdemo.wsgiapp import create_wsgi_app

application = create_wsgi_app(load_settings())
