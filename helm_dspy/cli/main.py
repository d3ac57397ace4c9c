"""``helm-dspy <verb>``: the command-line entry point. User errors end as one line, exit code 2."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from helm_dspy import __version__
from helm_dspy.errors import UserError
from helm_dspy.secrets import install_log_redaction, redact


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
    for verb in [check, *(p for name, p in verbs.choices.items() if name != "data")]:
        verb.add_argument(
            "-v",
            "--verbose",
            action="store_true",
            help=f"print HELM's log (retries, provider errors, tracebacks; secrets masked) to stderr instead of "
            f"the log file (${LOG_ENV}, default ~/.cache/helm_dspy/helm-dspy.log)",
        )
    return parser


def add_quickstart_parser(verbs) -> None:
    from helm_dspy.local.deployment import LOCAL_MODEL
    from helm_dspy.quickstart.run import OPTIMIZERS, SCENARIOS

    quick = verbs.add_parser(
        "quickstart",
        help="optimize and evaluate the four scenarios with the embedded local model (no API key, no network)",
        description="Optimize (BFRS and MIPROv2 at 2-core budgets), helm-run baseline and methods on the same "
        "held-out test instances, helm-summarize, and report, for medcalc_bench, medec, head_qa, medbullets. "
        "Resumable: finished agents and runs are skipped and model calls are cached.",
    )
    quick.add_argument("--model", default=LOCAL_MODEL, help=f"HELM deployment to use (default {LOCAL_MODEL})")
    quick.add_argument("--gguf", metavar="PATH", help="use this GGUF file instead (served as local/gguf)")
    quick.add_argument("--n-ctx", type=int, help="context size of the local model (default 8192; env HELM_DSPY_N_CTX)")
    quick.add_argument(
        "--n-threads", type=int, help="llama.cpp threads (default: all usable CPUs; env HELM_DSPY_N_THREADS)"
    )
    quick.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help=f"comma-separated subset of {','.join(SCENARIOS)}"
    )
    quick.add_argument("--optimizers", default=",".join(OPTIMIZERS), help="comma-separated optimize methods")
    quick.add_argument("--max-eval-instances", type=int, default=5, help="test instances per run (default 5)")
    quick.add_argument("--max-train", type=int, default=3, help="train examples per optimization (default 3)")
    quick.add_argument("--max-val", type=int, default=3, help="validation examples per optimization (default 3)")
    quick.add_argument(
        "--max-tokens", type=int, default=384, help="output cap per DSPy call while optimizing (default 384)"
    )
    quick.add_argument("--suite", default="quickstart", help="helm-run suite name (default quickstart)")
    quick.add_argument("--local-path", default="prod_env", help="HELM prod_env folder (default prod_env)")
    quick.add_argument("--output-path", default="benchmark_output", help="HELM output folder")
    quick.add_argument("--agents-dir", default="agents", help="where agents are written (default agents)")
    add_data_dir_flag(quick)
    quick.add_argument("--seed", type=int, default=1, help="seed for sampling and optimizers (default 1)")
    quick.add_argument("--num-threads", type=int, default=1, help="parallel model calls (default 1: one local model)")
    quick.set_defaults(handler=run_quickstart)


def run_quickstart(args: argparse.Namespace) -> int:
    import os

    from helm_dspy.local.deployment import (
        GGUF_ENV,
        GGUF_MODEL,
        LOCAL_MODEL,
        N_CTX_ENV,
        N_THREADS_ENV,
        register_local_model,
    )
    from helm_dspy.local.weights import resolve_model_path
    from helm_dspy.quickstart.run import QuickstartOptions, quickstart

    for flag in ("max_eval_instances", "max_train", "max_val", "max_tokens", "num_threads", "n_ctx", "n_threads"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise UserError(f"--{flag.replace('_', '-')} must be at least 1")
    for flag, env in (("n_ctx", N_CTX_ENV), ("n_threads", N_THREADS_ENV)):
        if getattr(args, flag) is not None:
            os.environ[env] = str(getattr(args, flag))  # helm-run subprocesses read it at plugin import
            register_local_model(LOCAL_MODEL, replace=True)
    model = args.model
    if args.gguf:
        path = resolve_model_path(args.gguf)
        os.environ[GGUF_ENV] = str(path)  # helm-run subprocesses register it at plugin import
        register_local_model(GGUF_MODEL, str(path))
        model = GGUF_MODEL
    options = QuickstartOptions(
        model=model,
        scenarios=[s.strip() for s in args.scenarios.split(",") if s.strip()],
        optimizers=[o.strip() for o in args.optimizers.split(",") if o.strip()],
        max_eval_instances=args.max_eval_instances,
        max_train=args.max_train,
        max_val=args.max_val,
        max_tokens=args.max_tokens,
        suite=args.suite,
        local_path=args.local_path,
        output_path=args.output_path,
        agents_dir=args.agents_dir,
        data_dir=args.data_dir,
        seed=args.seed,
        num_threads=args.num_threads,
    )
    quickstart(options)
    return 0


def add_report_parser(verbs) -> None:
    rep = verbs.add_parser(
        "report",
        help="compare each DSPy method with HELM's baseline prompt, with paired 95% bootstrap CIs",
        description="Per scenario and base model: baseline score, each method's score, the difference and a paired "
        "95%% bootstrap CI over instances; LM calls and tokens per run. Prints a table and writes "
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
    from helm_dspy.optimize.methods import METHOD_NAMES

    opt = verbs.add_parser(
        "optimize",
        help="optimize a HELM scenario's prompt with DSPy for one model deployment",
        description="Optimize dspy.ChainOfThought('inputs -> output') on HELM's rendered prompts, scored by the "
        "scenario's HELM metric, calling the model through HELM's deployments, credentials and cache. Writes "
        "AGENTS_DIR/<scenario>/<model>/<optimizer>.json (DSPy JSON state) and a .manifest.json beside it.",
    )
    opt.add_argument(
        "--scenario",
        required=True,
        help="a HELM run entry without model: medcalc_bench, medec, head_qa, medbullets (defaults to holdout=0.2), "
        "or any run spec, e.g. mmlu:subject=anatomy,holdout=100",
    )
    opt.add_argument("--model", required=True, help="HELM model deployment to optimize for (as in helm-run model=)")
    opt.add_argument("--optimizer", required=True, help=f"one of: {', '.join(METHOD_NAMES)}")
    opt.add_argument(
        "--prompt-model",
        help="deployment for MIPROv2 instruction proposals, GEPA reflection, SIMBA rules (default --model)",
    )
    opt.add_argument("--agents-dir", default="agents", help="where agents are written (default: agents)")
    opt.add_argument(
        "--local-path",
        default="prod_env",
        help="HELM's prod_env folder: deployments, credentials, cache (default: prod_env)",
    )
    add_data_dir_flag(opt)
    opt.add_argument(
        "--output-path",
        default="benchmark_output",
        help="HELM output folder for scenario downloads (default: benchmark_output)",
    )
    opt.add_argument("--max-train", type=int, default=200, help="at most N train examples, seeded sample (default 200)")
    opt.add_argument(
        "--max-val", type=int, default=100, help="at most N validation examples, seeded sample (default 100)"
    )
    opt.add_argument("--seed", type=int, default=0, help="seed for sampling and optimizer randomness (default 0)")
    opt.add_argument("--num-threads", type=int, default=4, help="parallel model calls (default 4)")
    opt.add_argument("--program", choices=["cot", "predict"], help="program shape: ChainOfThought (default) or Predict")
    opt.add_argument(
        "--auto",
        choices=["light", "medium", "heavy", "none"],
        default="light",
        help="MIPROv2/GEPA budget (default light); MIPROv2 with none uses --num-candidates and --num-trials",
    )
    opt.add_argument("--num-trials", type=int, help="MIPROv2 trials with --auto none (default 3)")
    opt.add_argument("--max-bootstrapped-demos", type=int, default=3, help="bootstrapped demos per program (default 3)")
    opt.add_argument("--max-labeled-demos", type=int, default=3, help="labeled demos per program (default 3)")
    opt.add_argument(
        "--num-candidates", type=int, help="BFRS candidate programs (default 16) / SIMBA candidates (default 6)"
    )
    opt.add_argument(
        "--bsize", type=int, default=32, help="SIMBA mini-batch size (capped at the train size; default 32)"
    )
    opt.add_argument("--max-steps", type=int, default=8, help="SIMBA steps (default 8)")
    opt.add_argument("--max-tokens", type=int, default=1024, help="output cap per DSPy call (default 1024)")
    opt.add_argument("--dry-run", action="store_true", help="print how many LM calls the run would make; spend nothing")
    opt.add_argument(
        "--max-lm-calls", type=int, help="stop cleanly (writing nothing) after N calls that reach the model"
    )
    opt.add_argument("--force", action="store_true", help="overwrite an existing agent")
    opt.set_defaults(handler=run_optimize)


def run_optimize(args: argparse.Namespace) -> int:
    from helm_dspy.optimize.methods import MethodSettings
    from helm_dspy.optimize.run import OptimizeOptions, optimize, summary_table

    for flag in ("max_train", "max_val", "num_threads", "max_tokens", "bsize", "max_steps"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise UserError(f"--{flag.replace('_', '-')} must be at least 1")
    settings = MethodSettings(
        auto=args.auto,
        max_bootstrapped_demos=args.max_bootstrapped_demos,
        max_labeled_demos=args.max_labeled_demos,
        num_candidates=args.num_candidates,
        num_threads=args.num_threads,
        seed=args.seed,
        bsize=args.bsize,
        max_steps=args.max_steps,
        num_trials=args.num_trials,
    )
    if args.auto == "none" and args.optimizer == "GEPA":
        raise UserError("GEPA needs --auto light, medium or heavy")
    options = OptimizeOptions(
        scenario=args.scenario,
        model=args.model,
        optimizer=args.optimizer,
        prompt_model=args.prompt_model,
        agents_dir=args.agents_dir,
        local_path=args.local_path,
        data_dir=args.data_dir,
        output_path=args.output_path,
        max_train=args.max_train,
        max_val=args.max_val,
        program=args.program,
        max_tokens=args.max_tokens,
        dry_run=args.dry_run,
        max_lm_calls=args.max_lm_calls,
        force=args.force,
        settings=settings,
    )
    result = optimize(options)
    if result.agent_path is not None:
        print(summary_table(result))
    return 0


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
    """HELM's metric import retries NLTK's punkt_tab download (four error lines offline); DSPy logs every
    evaluation at INFO and every failed example at ERROR. Keep stderr for our own messages."""
    import functools
    import io

    import dspy  # noqa: F401  (configures its loggers on import; adjust them after)
    import nltk

    logging.getLogger("dspy").setLevel(logging.WARNING)
    logging.getLogger("dspy.utils.parallelizer").setLevel(logging.CRITICAL)  # we count parse failures ourselves
    download = nltk.download

    @functools.wraps(download)
    def quiet_download(*args, **kwargs):  # still downloads online, silently
        kwargs.setdefault("quiet", True)
        kwargs.setdefault("print_error_to", io.StringIO())  # nltk binds sys.stderr at definition time
        return download(*args, **kwargs)

    nltk.download = quiet_download


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
