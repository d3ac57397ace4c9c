"""What ``helm-run`` was started with, for the parts of the plugin HELM gives no arguments to.

HELM passes neither ``--local-path`` nor ``--disable-cache`` to run expanders or clients, and loads plugins
before it reads credentials, so the plugin reads them from the command line, here and only here.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DEFAULT_LOCAL_PATH = "prod_env"
"""HELM's default ``--local-path`` folder (deployments, credentials.conf, cache)."""


def under_helm_run() -> bool:
    """True when this process is ``helm-run`` (HELM's console script or ``python -m helm.benchmark.run``)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return program == "helm-run" or getattr(spec, "name", "") == "helm.benchmark.run"


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--local-path", default=DEFAULT_LOCAL_PATH)
    parser.add_argument("--disable-cache", action="store_true")
    return parser.parse_known_args(sys.argv[1:])[0]


def local_path() -> str:
    """``helm-run --local-path`` (absolute), HELM's default when not given."""
    return os.path.abspath(_parse().local_path)


def cache_disabled() -> bool:
    """``helm-run --disable-cache``: clients must neither read nor write HELM's request cache."""
    return bool(_parse().disable_cache)
