"""``helm-dspy`` with the ``grid`` verb, also before ``helm_dspy.cli.main`` registers it (tests run this file)."""

from __future__ import annotations

import argparse
import sys

from helm_dspy.cli import main as cli_main
from helm_dspy.grid.cli import add_grid_parser

_build_parser = cli_main.build_parser


def build_parser() -> argparse.ArgumentParser:
    parser = _build_parser()
    verbs = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    if "grid" not in verbs.choices:
        add_grid_parser(verbs).add_argument("-v", "--verbose", action="store_true", help="HELM's log to stderr")
    return parser


cli_main.build_parser = build_parser

if __name__ == "__main__":
    sys.exit(cli_main.main())
