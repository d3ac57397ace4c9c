"""``helm-dspy <verb>``: the command-line entry point. User errors end as one line, exit code 2."""

from __future__ import annotations

import argparse
import sys

from helm_dspy import __version__
from helm_dspy.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="helm-dspy",
        description="Optimize HELM prompts with DSPy, scored by HELM's metrics, evaluated inside helm-run.",
    )
    parser.add_argument("--version", action="version", version=f"helm-dspy {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="<verb>")
    verbs.required = True

    data = verbs.add_parser("data", help="inspect benchmark data (the offline mirror)")
    data_verbs = data.add_subparsers(dest="data_verb", metavar="<action>")
    data_verbs.required = True
    check = data_verbs.add_parser(
        "check",
        help="list each scenario's splits in the mirror: source file, instance count, status",
        description="Load every mirrored split through the scenario classes and report it. Exits 1 when a "
        "needed file is missing or any file is malformed.",
    )
    add_data_dir_flag(check)
    check.add_argument(
        "--scenario",
        action="append",
        metavar="NAME",
        help="check only this scenario (repeatable); default: all four",
    )
    check.set_defaults(handler=run_data_check)
    return parser


def add_data_dir_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="offline mirror folder (one subfolder per scenario, upstream file names); "
        "overrides HELM_DSPY_DATA_DIR. Without either, data is downloaded as HELM does.",
    )


def run_data_check(args: argparse.Namespace) -> int:
    from helm_dspy.data import check, mirror

    mirror.set_data_dir(args.data_dir)
    rows = check.check_mirror(args.scenario)
    print(check.format_rows(rows))
    failed = [row for row in rows if row.failed]
    if failed:
        print(f"data check failed: {len(failed)} needed file(s) missing or malformed", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except UserError as error:
        print(f"helm-dspy: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("helm-dspy: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
