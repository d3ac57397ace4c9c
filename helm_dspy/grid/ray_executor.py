"""``--executor ray``: each optimize cell and each evaluation is a Ray task (local Ray, KubeRay or Slurm alike).

A task gets the driver's ``--local-path`` folder (deployments, credentials, HELM's request cache) as a tarball,
unpacks it into a private temp folder, runs the same command the local executor runs, and returns its artifacts:
the agent and its manifest, or the run folders, plus the request-cache files. The driver writes them under its
own agents/ and benchmark_output/ and merges the cache, so a rerun skips the work and repeats no model call.
Failures of the command come back as values (one line) and are never retried; a worker that dies (killed, out of
memory, its machine gone) is retried by Ray (``max_retries``), and the task's reply says which attempt it was, so
the driver reports the retry. The command dies with its worker (``PR_SET_PDEATHSIG``): no orphan keeps calling
the model while the retry runs.
The data mirror must be at the same path on every worker (``data_dir``/``HELM_DSPY_DATA_DIR``). The
per-deployment call limits are held cluster-wide by one named limiter actor (``helm_dspy.grid.ray_limits``).
"""

from __future__ import annotations

import ctypes
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from pathlib import Path

from helm_dspy.core.agents import AGENTS_ENV, DEFAULT_AGENTS_DIR, AgentStore
from helm_dspy.grid import artifacts
from helm_dspy.grid.cells import Evaluation, Node, OptimizeCell
from helm_dspy.grid.commands import Paths, evaluate_command, optimize_command
from helm_dspy.grid.executor import NodeResult, failure_line, log_path, state_dir
from helm_dspy.grid.plan import Grid
from helm_dspy.grid.ray_limits import SlotServer, start_limiter
from helm_dspy.helm_run_args import DEFAULT_LOCAL_PATH

MAX_RETRIES = 2
"""Ray reruns a task whose worker died this many times (the command's own failures are not retried)."""
PASSED_ENV = ("PYTHONPATH", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "LITELLM_LOCAL_MODEL_COST_MAP", "XDG_CACHE_HOME")
"""Environment the tasks get besides ``HELM_DSPY_*``: no keys (credentials.conf has them, or the cluster's env)."""


def attempt_number() -> int:
    """Which attempt of the current Ray task this is (0: the first; more after its worker died)."""
    try:
        import ray

        return int(ray._private.worker.global_worker.core_worker.get_current_task_attempt_number())
    except Exception:  # not in a Ray task, or a Ray without it: no retry seen
        return 0


def task_tag() -> str:
    """The current Ray task's id (the same for every attempt), for its temp folder's name."""
    try:
        import ray

        return ray.get_runtime_context().get_task_id() or "task"
    except Exception:
        return "task"


def die_with_parent() -> None:
    """In the command's process before exec: SIGKILL when the worker that started it dies (Linux)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # not Linux: the command may outlive a killed worker
        pass


def run_task(
    grid: Grid, node: Node, local_path: bytes, agents: dict[str, str | bytes], env: dict[str, str], limiter=None
) -> dict:
    """Inside a Ray worker: the node's command in a temp folder, its model calls' slots held at ``limiter``;
    returns ok, the error line, the attempt and the artifacts."""
    if limiter is None:
        return _run_command(grid, node, local_path, agents, env)
    import ray

    with SlotServer(ray, limiter, grid.call_limits()) as slots:
        return _run_command(grid, node, local_path, agents, {**env, **slots.env()})


def _run_command(grid: Grid, node: Node, local_path: bytes, agents: dict[str, str | bytes], env: dict[str, str]):
    attempt, prefix = attempt_number(), f"helm-dspy-grid-{task_tag()}-"
    if attempt:  # a killed attempt on this machine left its folder behind
        for stale in glob.glob(os.path.join(tempfile.gettempdir(), prefix + "*")):
            shutil.rmtree(stale, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix=prefix) as root:
        paths = Paths(
            *(str(Path(root) / name) for name in (DEFAULT_LOCAL_PATH, DEFAULT_AGENTS_DIR, "benchmark_output"))
        )
        artifacts.unpack(local_path, paths.local_path)
        artifacts.write_files({k: v for k, v in agents.items() if isinstance(v, bytes)}, paths.agents_dir)
        if isinstance(node, OptimizeCell):
            command = optimize_command(grid, node, paths)
        else:
            command = evaluate_command(grid, node, paths)
        child_env = {**os.environ, **env, AGENTS_ENV: paths.agents_dir}
        result = subprocess.run(
            command, cwd=root, env=child_env, capture_output=True, text=True, preexec_fn=die_with_parent
        )
        output = result.stdout + result.stderr
        reply: dict = {"ok": result.returncode == 0, "output": output, "returncode": result.returncode}
        reply["attempt"] = attempt
        reply["cache"] = artifacts.files_of(Path(paths.local_path) / "cache")
        if isinstance(node, OptimizeCell):
            reply["agent_files"] = artifacts.files_of(paths.agents_dir)
        else:
            reply["runs"] = artifacts.pack(Path(paths.output_path) / "runs" / grid.suite)
        return reply


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

    def _agents_for(self, node: Node) -> dict[str, bytes]:
        if not isinstance(node, Evaluation):
            return {}
        folder = Path(self.grid.agents_dir) / self.grid.scenario_keys[node.scenario] / node.model
        prefix = Path(self.grid.scenario_keys[node.scenario]) / node.model
        return {str(prefix / name): content for name, content in artifacts.files_of(folder).items()}

    def run(self, node: Node) -> NodeResult:
        if self._interrupted:
            return NodeResult(False, "interrupted")
        ref = self.task.remote(self.grid, node, self._local_path_ref(), self._agents_for(node), self.env, self.limiter)
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
