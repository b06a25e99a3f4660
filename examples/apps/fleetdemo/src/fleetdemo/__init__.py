"""fleetdemo: reference backend for the pyfleet.server Ansible collection."""

__version__ = "1.0.0"
