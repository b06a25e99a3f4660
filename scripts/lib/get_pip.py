"""Offline stand-in for the get-pip.py that ansible-test downloads from ci-files.testing.ansible.com.

ansible-test bootstraps pip into each sanity venv by running `python get_pip_<ver>.py <pip install args>`;
that host is out of reach here. scripts/sanity.sh places this file where ansible-test looks for its cached
copy and puts the pip wheel (fetched from PyPI) beside it. Like get-pip.py, it runs pip from the wheel to
install the requested pip, dropping the --no-setuptools/--no-wheel switches only get-pip.py understands.
"""

from __future__ import annotations

import glob
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
wheels = sorted(glob.glob(os.path.join(here, "pip-*.whl")))
if not wheels:
    sys.exit(f"get_pip: no pip wheel next to {__file__}; run scripts/sanity.sh again")
sys.path.insert(0, wheels[-1])

from pip._internal.cli.main import main  # noqa: E402  (importable only once the wheel is on sys.path)

args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(main(["install", "--upgrade", "--force-reinstall", "--find-links", here, *args]))
