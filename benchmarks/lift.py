"""Measured lift on the embedded model at n >= 100: HELM's baseline vs zero-shot Predict and CoT vs BFRS.

Runs ``helm-dspy quickstart`` (the embedded Qwen2.5-Coder-1.5B, in-process) with a real budget into its own suite:
``--max-val 50`` examples to choose on, ``--max-eval-instances 100`` held-out test instances per scenario, and both
zero-shot programs as controls, so the table also answers "Predict or CoT for a 1.5B model?". Every run is paired
on the same instances; the report gives each method's score, its difference to HELM's baseline with a paired
bootstrap 95% CI, and the plot. Resumable: rerun the same command and finished agents and runs are skipped, every
model call already made comes from HELM's cache, so it can run in pieces (Ctrl-C, rerun).

Usage: ``python benchmarks/lift.py [--scenarios head_qa,medbullets] [--optimizers BootstrapFewShotWithRandomSearch]
[--max-val 50] [--max-eval-instances 100] [--workdir lift_run]`` (needs ``HELM_DSPY_DATA_DIR``). At the end it
prints the table with the date, the machine and the command, for the README.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def machine() -> str:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    model = ""
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpus} CPUs ({model or platform.processor() or platform.machine()}), Python {platform.python_version()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", default="head_qa,medbullets", help="comma-separated quickstart scenarios")
    parser.add_argument("--optimizers", default="BootstrapFewShotWithRandomSearch", help="comma-separated methods")
    parser.add_argument("--controls", default="zeroshot-predict,zeroshot-cot", help="zero-shot programs evaluated")
    parser.add_argument("--max-val", type=int, default=50, help="validation examples the optimizer chooses on")
    parser.add_argument("--max-train", type=int, default=16, help="train examples BFRS bootstraps demos from")
    parser.add_argument("--max-eval-instances", type=int, default=100, help="held-out test instances per scenario")
    parser.add_argument("--workdir", default="lift_run", help="folder for prod_env, agents and benchmark_output")
    args = parser.parse_args()
    if not os.environ.get("HELM_DSPY_DATA_DIR"):
        raise SystemExit("set HELM_DSPY_DATA_DIR to the data mirror")
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    command = [
        str(Path(sys.executable).parent / "helm-dspy"), "quickstart", "--scenarios", args.scenarios,
        "--optimizers", args.optimizers, "--controls", args.controls, "--max-val", str(args.max_val),
        "--max-train", str(args.max_train), "--max-eval-instances", str(args.max_eval_instances), "--suite", "lift",
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    started = time.monotonic()
    result = subprocess.run(command, cwd=workdir, env=env)
    minutes = (time.monotonic() - started) / 60
    shown = " ".join(["python benchmarks/lift.py", *sys.argv[1:]])
    print(f"\n{datetime.date.today().isoformat()}, {machine()}, `{shown}`: {minutes:.1f} min this piece")
    report = workdir / "benchmark_output" / "runs" / "lift"
    print(f"report: {report / 'helm_dspy_report.csv'}, plot: {report / 'helm_dspy_report.png'}")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
