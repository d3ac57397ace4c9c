"""``helm-dspy <verb>``: the command-line entry point. User errors end as one line, exit code 2."""

from __future__ import annotations

import argparse
import io
import logging
import os
import sys
from pathlib import Path

import dspy  # noqa: F401  (configures its loggers on import; quiet_offline_noise adjusts them after)
import nltk

from helm_dspy.core.options import DATA_DIR_HELP, add_options, from_args
from helm_dspy.data import mirror
from helm_dspy.errors import UserError
from helm_dspy.secrets import install_log_redaction, redact

# The commands' modules import HELM's metrics, which try to download NLTK data at import: they are imported
# in build_parser and the handlers, after quiet_offline_noise() (see main), not here.
from helm_dspy.version import __version__


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
        description="Verify every mirror file against the upstream version HELM 0.5.16 evaluates (sha256 and row "
        "count), load each split through the scenario classes and report it. Exits 1 when a needed file is "
        "missing or any file is malformed or not the upstream version.",
    )
    add_data_dir_flag(check)
    check.add_argument(
        "--allow-modified-data",
        action="store_true",
        help="accept mirror files that differ from upstream (shown as 'modified'); same as "
        "HELM_DSPY_ALLOW_MODIFIED_DATA=1, which the other commands read",
    )
    check.add_argument(
        "--scenario",
        action="append",
        metavar="NAME",
        help="check only this scenario (repeatable); default: all four",
    )
    check.set_defaults(handler=run_data_check)
    add_optimize_parser(verbs)
    add_report_parser(verbs)
    add_quickstart_parser(verbs)
    add_grid_parser(verbs)
    for verb in [check, *(p for name, p in verbs.choices.items() if name != "data")]:
        verb.add_argument(
            "-v",
            "--verbose",
            action="store_true",
            help=f"print HELM's log (retries, provider errors, tracebacks; secrets masked) to stderr instead of "
            f"the log file (${LOG_ENV}, default ~/.cache/helm_dspy/helm-dspy.log)",
        )
    return parser


def add_grid_parser(verbs) -> None:
    from helm_dspy.grid.cli import add_grid_parser as add

    add(verbs)


def add_quickstart_parser(verbs) -> None:
    from helm_dspy.quickstart.run import QuickstartOptions

    quick = verbs.add_parser(
        "quickstart",
        help="optimize and evaluate the four scenarios with the embedded local model (no API key; "
        "the network only for data when no mirror is set)",
        description="Optimize (BFRS and MIPROv2 at 2-core budgets), helm-run baseline, the zero-shot CoT control and "
        "methods on the same held-out test instances, helm-summarize, and report, for medcalc_bench, medec, head_qa, "
        "medbullets. Resumable: finished agents and runs are skipped and model calls are cached.",
    )
    add_options(quick, QuickstartOptions)
    quick.set_defaults(handler=run_quickstart)


def run_quickstart(args: argparse.Namespace) -> int:
    from helm_dspy.quickstart.run import QuickstartOptions, quickstart

    return quickstart(from_args(QuickstartOptions, args))


def add_report_parser(verbs) -> None:
    rep = verbs.add_parser(
        "report",
        help="compare each DSPy method with HELM's baseline prompt, with paired 95%% bootstrap CIs",
        description="Per scenario and base model: baseline score, each method's score, the difference and a paired "
        "95% bootstrap CI over instances; LM calls and tokens per run. Prints a table and writes "
        "helm_dspy_report.csv/.json/.png into the suite folder.",
    )
    rep.add_argument("--suite", required=True, help="the helm-run suite to read")
    rep.add_argument(
        "-o", "--output-path", default="benchmark_output", help="helm-run's output folder (default: benchmark_output)"
    )
    rep.add_argument(
        "--metric",
        help="per-instance metric to compare (default: medcalc_bench_accuracy_fixed, "
        "medec_error_flag_accuracy, else exact_match)",
    )
    rep.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    rep.set_defaults(handler=run_report)


def run_report(args: argparse.Namespace) -> int:
    from helm_dspy.report.report import format_table, report

    rows, paths = report(args.suite, args.output_path, args.metric, args.seed)
    print(format_table(rows))
    print("wrote " + ", ".join(str(path) for path in paths.values()))
    return 0


def add_optimize_parser(verbs) -> None:
    from helm_dspy.optimize.run import OptimizeOptions

    opt = verbs.add_parser(
        "optimize",
        help="optimize a HELM scenario's prompt with DSPy for one model deployment",
        description="Optimize dspy.ChainOfThought('inputs -> output') on HELM's rendered prompts, scored by the "
        "scenario's HELM metric, calling the model through HELM's deployments, credentials and cache. Writes "
        "AGENTS_DIR/<scenario>/<model>/<optimizer>.json (DSPy JSON state) and a .manifest.json beside it.",
    )
    add_options(opt, OptimizeOptions)
    opt.set_defaults(handler=run_optimize)


def run_optimize(args: argparse.Namespace) -> int:
    from helm_dspy.optimize.run import OptimizeOptions, optimize, summary_table

    result = optimize(from_args(OptimizeOptions, args))
    if result.agent_path is not None:
        print(summary_table(result))
    return 0


def add_data_dir_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", metavar="DIR", help=DATA_DIR_HELP)


def run_data_check(args: argparse.Namespace) -> int:
    from helm_dspy.scenarios import mirror_check as check

    mirror.set_data_dir(args.data_dir)
    if args.allow_modified_data:
        os.environ[mirror.ALLOW_MODIFIED_ENV] = "1"
    rows = check.check_mirror(args.scenario)
    print(check.format_rows(rows))
    failed = [row for row in rows if row.failed]
    if failed:
        print(f"helm-dspy: error: {check.failure_message(failed)}", file=sys.stderr)
        return 1
    return 0


def quiet_offline_noise() -> None:
    """DSPy logs every evaluation at INFO and every failed example at ERROR; HELM's reference metrics try to
    download NLTK's punkt_tab when imported (four error lines offline). Keep stderr for our own messages."""
    logging.getLogger("dspy").setLevel(logging.WARNING)
    logging.getLogger("dspy.utils.parallelizer").setLevel(logging.CRITICAL)  # we count parse failures ourselves
    download = nltk.download

    def quiet_download(*args, **kwargs):  # still downloads online, silently
        kwargs.setdefault("quiet", True)
        kwargs.setdefault("print_error_to", io.StringIO())  # nltk binds sys.stderr at definition time
        return download(*args, **kwargs)

    nltk.download = quiet_download
    try:  # HELM calls install_nltk_resources() once, at this import; nltk is ours again afterwards
        import helm.benchmark.metrics.evaluate_reference_metrics  # noqa: F401
    finally:
        nltk.download = download


LOG_ENV = "HELM_DSPY_LOG"


def log_path() -> Path:
    """Where HELM's and DSPy's log lines go (masked): ``$HELM_DSPY_LOG``, else the user's cache folder."""
    configured = os.environ.get(LOG_ENV, "").strip()
    if configured:
        return Path(configured).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "helm_dspy" / "helm-dspy.log"


class _ErrorCounter(logging.Handler):
    """Counts HELM error records, so the final error line can point at the log that holds their details."""

    def __init__(self):
        super().__init__(level=logging.ERROR)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def configure_logging(verbose: bool) -> _ErrorCounter:
    """HELM's log (retries, provider errors with tracebacks) to the log file, or to stderr with --verbose.

    Either way every record is masked first (``helm_dspy.secrets``): providers quote keys in their errors.
    """
    install_log_redaction()
    path = log_path()
    counter = _ErrorCounter()
    handlers: list[logging.Handler] = [counter]
    if verbose:
        handlers.append(logging.StreamHandler(sys.stderr))
    else:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handlers.append(logging.FileHandler(path, encoding="utf-8", delay=True))
        except OSError:
            pass  # no writable log folder: HELM's lines are dropped, our one-line errors still print
    formatter = logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s")
    helm_logger = logging.getLogger("helm")
    helm_logger.setLevel(logging.INFO)
    helm_logger.propagate = False
    for handler in handlers:
        handler.setFormatter(formatter)
        helm_logger.addHandler(handler)
    return counter


def main(argv: list[str] | None = None) -> int:
    quiet_offline_noise()
    args = build_parser().parse_args(argv)
    errors = configure_logging(getattr(args, "verbose", False))
    try:
        return args.handler(args)
    except UserError as error:
        detail = (
            ""
            if getattr(args, "verbose", False) or not errors.count
            else f" (HELM's log: {log_path()}; or rerun with --verbose)"
        )
        print(f"helm-dspy: error: {redact(str(error))}{detail}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("helm-dspy: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
