"""Grid wall time, one node at a time vs in parallel: 8 optimize cells against a provider that takes 0.2 s a call.

What the grid is for: API models, whose cells spend their time waiting on the provider. 2 scenarios x 4
deployments x BFRS (2 candidates, 8 train, 60 valid, ``--num-threads 1``: one call in flight per cell, so one
node at a time really waits for every call) + 8 helm-runs (baseline, BFRS, zeroshot-cot on 3 instances), all on
one local FaultServer (tests/fault_server.py, ``delay_s=0.2``), each configuration in a fresh folder (empty
request cache). Prints wall time per configuration, the speed-up over ``--max-parallel 1`` and the model calls
each made (they must match). Needs the data mirror (``HELM_DSPY_DATA_DIR``).
Usage: ``python benchmarks/grid_speed.py [--ray]`` (about 15 minutes with ``--ray`` on 2 cores).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from fault_server import FaultServer, write_fault_deployment  # noqa: E402

MODELS = ("fault/a", "fault/b", "fault/c", "fault/d")
FLAGS = [
    "--scenarios", "medbullets:holdout=0.2,head_qa", "--models", ",".join(MODELS),
    "--methods", "BootstrapFewShotWithRandomSearch,zeroshot-cot", "--num-candidates", "2", "--max-train", "8",
    "--max-val", "60", "--max-eval-instances", "3", "--num-threads", "1", "--eval-num-threads", "2",
    "--max-tokens", "256", "--suite", "speed",
]  # fmt: skip


def run(configuration: list[str], server: FaultServer) -> tuple[float, int, frozenset[str]]:
    """Wall seconds, model calls and the distinct requests of one grid in a fresh folder."""
    with tempfile.TemporaryDirectory(prefix="grid-speed-") as root:
        for model in MODELS:
            write_fault_deployment(Path(root) / "prod_env", model, server)
        server.reset_counts()
        env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), str(REPO), os.environ.get("PYTHONPATH", "")]),
        }
        command = [sys.executable, str(REPO / "tests" / "grid_cli.py"), "grid", *FLAGS, *configuration]
        start = time.perf_counter()
        result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if result.returncode != 0:
            raise SystemExit(f"grid failed ({' '.join(configuration)}): {result.stderr[-2000:]}")
        return seconds, server.requests, frozenset(server.per_request)


def main() -> None:
    if not os.environ.get("HELM_DSPY_DATA_DIR"):
        raise SystemExit("set HELM_DSPY_DATA_DIR to the data mirror")
    with tempfile.TemporaryDirectory() as scratch:
        answers = Path(scratch) / "answers.json"
        answers.write_text(json.dumps({}))
        server = FaultServer(answers, delay_s=0.2).start()
        configurations = {"--max-parallel 1": ["--max-parallel", "1"], "--max-parallel 8": ["--max-parallel", "8"]}
        if "--ray" in sys.argv:
            configurations["--executor ray --max-parallel 8"] = ["--executor", "ray", "--max-parallel", "8"]
        results = {}
        try:
            for name, configuration in configurations.items():
                results[name] = seconds, calls, distinct = run(configuration, server)
                repeated = f", {calls - len(distinct)} sent again (retries)" if calls > len(distinct) else ""
                line = f"{name:32s} {seconds:7.1f} s  {calls:5d} model calls ({len(distinct)} distinct{repeated})"
                print(line, flush=True)
        finally:
            server.stop()
    base_seconds, base_calls, base_distinct = results["--max-parallel 1"]
    for name, (seconds, calls, distinct) in results.items():
        same = "identical" if distinct == base_distinct else f"DIFFERENT ({len(distinct ^ base_distinct)} differ)"
        print(f"{name:32s} speed-up {base_seconds / seconds:4.2f}x  requests {same}, {calls} calls vs {base_calls}")


if __name__ == "__main__":
    main()
