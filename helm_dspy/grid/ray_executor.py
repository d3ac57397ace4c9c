"""``--executor ray``: each optimize cell and each evaluation is a Ray task (local Ray, KubeRay or Slurm alike).

A task (``grid.task``: plain data, run by a worker that imports no DSPy) gets the driver's ``--local-path`` folder
(deployments, credentials, HELM's request cache) as a tarball, runs the same command the local executor runs in a
private temp folder, and returns its artifacts: the agent and its manifest, or the run folders, plus the
request-cache files. The driver writes them under its own agents/ and benchmark_output/ and merges the cache, so a
rerun skips the work and repeats no model call. Failures of the command come back as values (one line) and are
never retried; a worker that dies (killed, out of memory, its machine gone) is retried by Ray (``max_retries``),
and the driver reports the retry. The data mirror must be at the same path on every worker
(``data_dir``/``HELM_DSPY_DATA_DIR``). The per-deployment call limits are held cluster-wide by one named limiter
actor (``helm_dspy.grid.ray_limits``).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from helm_dspy.core.agents import AGENTS_ENV, AgentStore
from helm_dspy.grid import artifacts
from helm_dspy.grid.cells import Evaluation, Node, OptimizeCell
from helm_dspy.grid.commands import Paths, node_command
from helm_dspy.grid.executor import NodeResult, failure_line, log_path, state_dir
from helm_dspy.grid.plan import Grid
from helm_dspy.grid.ray_limits import start_limiter
from helm_dspy.grid.task import AGENTS_DIR, LOCAL_PATH, OUTPUT_PATH, Task, run_task

MAX_RETRIES = 2
"""Ray reruns a task whose worker died this many times (the command's own failures are not retried)."""
PASSED_ENV = ("PYTHONPATH", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "LITELLM_LOCAL_MODEL_COST_MAP", "XDG_CACHE_HOME")
"""Environment the tasks get besides ``HELM_DSPY_*``: no keys (credentials.conf has them, or the cluster's env)."""
TASK_PATHS = Paths(LOCAL_PATH, AGENTS_DIR, OUTPUT_PATH)
"""Where a task's command reads and writes: under the worker's temp folder."""


class RayExecutor:
    def __init__(self, grid: Grid, env: dict[str, str] | None = None):
        import ray

        self.ray = ray
        self.grid = grid
        self.started_ray = not ray.is_initialized()
        if self.started_ray:
            if grid.ray_address:
                ray.init(address=grid.ray_address, log_to_driver=False)
            else:
                ray.init(num_cpus=grid.max_parallel, include_dashboard=False, log_to_driver=False)
        passed = {k: v for k, v in os.environ.items() if k in PASSED_ENV or k.startswith("HELM_DSPY_")}
        self.env = {**passed, **(env or {})}
        # worker death only: a command that fails returns a value, and an exception in the task is not retried
        self.task = ray.remote(num_cpus=1, max_retries=MAX_RETRIES, retry_exceptions=False)(run_task)
        limits = grid.call_limits()
        self.limiter = start_limiter(ray, limits, str(state_dir(grid))) if limits else None
        alive = [node for node in ray.nodes() if node.get("Alive")]
        self.node_cpus = int(max((node["Resources"].get("CPU", 1) for node in alive), default=1))
        self._lock = threading.Lock()
        self._running: dict[str, object] = {}
        self._snapshot = None
        self._dirty = True
        self._interrupted = False

    def _local_path_ref(self):
        """The --local-path tarball in Ray's object store, re-packed after a task's cache was merged."""
        with self._lock:
            if self._dirty:
                self._snapshot = self.ray.put(artifacts.pack(self.grid.local_path))
                self._dirty = False
            return self._snapshot

    def cpus(self, node: Node) -> int:
        """The task's ``num_cpus``: its model's (the local model's threads), at most one machine's CPUs."""
        return max(1, min(self.grid.model(node.model).cpus, self.node_cpus))

    def _task(self, node: Node) -> Task:
        """The node's command with paths under the worker's folder, and the agents an evaluation reads."""
        command = node_command(self.grid, node, TASK_PATHS)
        env = {**self.env, AGENTS_ENV: AGENTS_DIR}
        optimize = isinstance(node, OptimizeCell)
        return Task(command, self.grid.suite, optimize, env, self._agents_for(node), self.grid.call_limits())

    def _agents_for(self, node: Node) -> dict[str, bytes]:
        if not isinstance(node, Evaluation):
            return {}
        folder = Path(self.grid.agents_dir) / self.grid.scenario_keys[node.scenario] / node.model
        prefix = Path(self.grid.scenario_keys[node.scenario]) / node.model
        return {str(prefix / name): content for name, content in artifacts.files_of(folder).items()}

    def run(self, node: Node) -> NodeResult:
        if self._interrupted:
            return NodeResult(False, "interrupted")
        task = self.task.options(num_cpus=self.cpus(node))
        ref = task.remote(self._task(node), self._local_path_ref(), self.limiter)
        with self._lock:
            self._running[node.key] = ref
        try:
            reply = self.ray.get(ref)
        except Exception as error:  # cancelled, or the worker died more than MAX_RETRIES times
            if self._interrupted:
                return NodeResult(False, "interrupted")
            if isinstance(error, self.ray.exceptions.WorkerCrashedError):
                line = f"Ray task failed: its worker died {MAX_RETRIES + 1} times (WorkerCrashedError)"
                return NodeResult(False, line, retries=MAX_RETRIES)
            return NodeResult(False, f"Ray task failed: {type(error).__name__}")
        finally:
            with self._lock:
                self._running.pop(node.key, None)
        return self._collect(node, reply)

    def _collect(self, node: Node, reply: dict) -> NodeResult:
        """Write what the task returned (cache always; agents and runs when it worked); its log beside the others."""
        log = log_path(self.grid, node)
        log.parent.mkdir(parents=True, exist_ok=True)
        retries = reply.get("attempt", 0)
        with self._lock:
            with open(log, "a", encoding="utf-8") as handle:
                if retries:
                    handle.write(f"[helm-dspy grid] attempt {retries + 1}: the worker of the earlier one died\n")
                handle.write(reply["output"])
            if artifacts.merge_cache(reply.get("cache", {}), Path(self.grid.local_path) / "cache"):
                self._dirty = True
            if reply["ok"] and "agent_files" in reply:
                manifests = frozenset(str(AgentStore.manifest_path(Path(name))) for name in reply["agent_files"])
                artifacts.write_files(reply["agent_files"], self.grid.agents_dir, last=manifests)  # manifest = finished
            if reply["ok"] and "runs" in reply:
                artifacts.place_runs(reply["runs"], Path(self.grid.output_path) / "runs" / self.grid.suite)
        if reply["ok"]:
            return NodeResult(True, retries=retries)
        return NodeResult(False, failure_line(reply["output"], reply["returncode"], log), retries=retries)

    def interrupt(self) -> None:
        self._interrupted = True
        with self._lock:
            refs = list(self._running.values())
        for ref in refs:
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # already finished
                pass

    def close(self) -> None:
        if self.started_ray and self.ray.is_initialized():
            self.ray.shutdown()
