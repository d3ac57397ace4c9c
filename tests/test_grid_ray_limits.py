"""The cluster-wide call limit: one limiter actor, reached by plain child processes through a task's socket."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helm_dspy.grid.ray_limits import CallLimiter

REPO_ROOT = Path(__file__).resolve().parents[1]
CHILD = """
import sys, time
sys.path.insert(0, sys.argv[1])
from helm_dspy.bridge.limits import call_slot
with open(sys.argv[2], "a") as log:
    for _ in range(int(sys.argv[3])):
        with call_slot("m/a"):
            start = time.time()
            time.sleep(0.2)
            log.write(f"{start} {time.time()}\\n")
            log.flush()
"""


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    current = peak = 0
    for _, step in events:  # an end sorts before a start at the same instant
        current += step
        peak = max(peak, current)
    return peak


def test_limiter_waits_for_a_free_slot_and_frees_a_dead_holders_leases():
    async def scenario() -> None:
        limiter = CallLimiter({"m/a": 1}, ttl_s=0.6)
        first = await limiter.acquire("m/a", "worker-that-dies")
        waiting = asyncio.ensure_future(limiter.acquire("m/a", "alive"))
        await asyncio.sleep(0.2)
        assert not waiting.done()  # one slot, held
        await limiter.release(first)
        second = await asyncio.wait_for(waiting, 1)
        third = asyncio.ensure_future(limiter.acquire("m/a", "alive-2"))
        for _ in range(3):  # "alive" keeps renewing; its lease is not taken away
            await asyncio.sleep(0.3)
            await limiter.renew("alive")
            await limiter.renew("alive-2")
        assert not third.done()
        await limiter.release(second)
        dead = await asyncio.wait_for(third, 1)
        # "alive-2" stops renewing (its worker died): the lease is freed after the TTL for the next holder
        assert await asyncio.wait_for(limiter.acquire("m/a", "next"), 2) > dead
        assert (await limiter.peak_held()) == {"m/a": 1}
        assert await asyncio.wait_for(limiter.acquire("unlimited/x", "any"), 1)  # no limit: at once

    asyncio.run(scenario())


@pytest.fixture
def local_ray():
    """A local Ray of 3 CPUs for one test (3 tasks at once), shut down after it."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_children_of_tasks_share_one_limit_across_the_cluster(tmp_path, local_ray):
    ray = local_ray
    from helm_dspy.grid.ray_limits import start_limiter

    limiter = start_limiter(ray, {"m/a": 2}, str(tmp_path))

    @ray.remote(num_cpus=1)
    def task(limiter, log: str) -> int:
        from helm_dspy.grid.ray_limits import SlotServer

        with SlotServer(ray, limiter, {"m/a": 2}) as slots:  # what run_task does around each command
            env = {**os.environ, **slots.env()}
            return subprocess.run([sys.executable, "-c", CHILD, str(REPO_ROOT), log, "4"], env=env).returncode

    logs = [str(tmp_path / f"task{i}.log") for i in range(3)]
    assert ray.get([task.remote(limiter, log) for log in logs]) == [0, 0, 0]
    intervals = [tuple(map(float, line.split())) for log in logs for line in Path(log).read_text().splitlines()]
    assert len(intervals) == 12
    assert most_at_once(intervals) == 2  # 3 tasks x 1 process each contended; never more than 2 calls
    assert ray.get(limiter.peak_held.remote()) == {"m/a": 2}
    assert ray.get(limiter.peak_held.remote()) == ray.get(start_limiter(ray, {}, str(tmp_path)).peak_held.remote())


@pytest.mark.slow
def test_a_killed_child_frees_its_slot(tmp_path, local_ray):
    ray = local_ray
    from helm_dspy.grid.ray_limits import SlotServer, start_limiter

    limiter = start_limiter(ray, {"m/a": 1}, str(tmp_path))
    with SlotServer(ray, limiter, {"m/a": 1}) as slots:
        holder = subprocess.Popen(
            [sys.executable, "-c", "import sys, time; sys.path.insert(0, sys.argv[1]);"
             "from helm_dspy.bridge.limits import call_slot\nwith call_slot('m/a'):\n"
             "    print('held', flush=True); time.sleep(60)", str(REPO_ROOT)],
            env={**os.environ, **slots.env()}, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert holder.stdout.readline().strip() == "held"
        log = str(tmp_path / "after.log")
        waiter = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(REPO_ROOT), log, "1"], env={**os.environ, **slots.env()}
        )
        time.sleep(1.0)
        assert waiter.poll() is None and Path(log).read_text() == ""  # waiting for the one slot
        holder.kill()
        holder.wait()
        assert waiter.wait(30) == 0 and Path(log).read_text().count("\n") == 1
