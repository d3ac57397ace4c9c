"""Plugin import cost: HELM imports ``helm_dspy`` at every ``helm-run`` start; the target is < 1 s.

Prints the median wall time of a fresh interpreter importing HELM's run machinery, and the same
plus the plugin, so the plugin's own share is visible. Usage: ``python benchmarks/import_time.py [N]``.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

CASES = {
    "python -c pass": "pass",
    "import helm_dspy (plugin, alone)": "import helm_dspy",
    "import helm.benchmark.run": "import helm.benchmark.run",
    "... + import helm_dspy (plugin)": "import helm.benchmark.run, helm_dspy",
}


def median_seconds(code: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    results = {label: median_seconds(code, repeats) for label, code in CASES.items()}
    for label, seconds in results.items():
        print(f"{label:<36} {seconds:6.3f} s (median of {repeats})")
    plugin = results["... + import helm_dspy (plugin)"] - results["import helm.benchmark.run"]
    print(f"{'plugin share':<36} {plugin:6.3f} s  (target: whole plugin import < 1 s)")


if __name__ == "__main__":
    main()
