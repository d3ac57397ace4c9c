"""The per-deployment call limit across a Ray cluster: one named limiter actor, and a socket in front of it per task.

Every optimize and helm-run child of every task, on any machine, holds its model calls' slots at the one actor
``CallLimiter`` (named ``helm-dspy-call-limits-<grid state folder hash>``), so ``max_concurrent_calls`` holds
cluster-wide however the tasks are spread. The children are plain processes, not Ray workers: the task serves a
Unix socket (``SlotServer``) that asks the actor on their behalf; ``helm_dspy.bridge.limits`` speaks to it with the
standard library only.

A child that dies closes its connection and the server frees its slot. A worker that dies takes its server with
it: its leases stop being renewed and the actor frees them after ``LEASE_TTL_S``.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import shutil
import socketserver
import tempfile
import threading
import time
import uuid
from collections import Counter

from helm_dspy.bridge.limits import socket_limits_env

LEASE_TTL_S = 60.0
"""A worker's slots are freed this long after its last renewal (it renews every third of it)."""


class CallLimiter:
    """At most ``limits[d]`` leases of deployment ``d`` at once, for every holder in the cluster (a Ray actor)."""

    def __init__(self, limits: dict[str, int], ttl_s: float = LEASE_TTL_S):
        self.limits = dict(limits)
        self.ttl_s = ttl_s
        self.held: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.leases: dict[int, tuple[str, str]] = {}  # lease -> (deployment, holder)
        self.renewed: dict[str, float] = {}
        self.ids = itertools.count(1)
        self.changed: asyncio.Condition | None = None  # made in the actor's event loop, on first use

    def _condition(self) -> asyncio.Condition:
        if self.changed is None:
            self.changed = asyncio.Condition()
        return self.changed

    def _expire(self) -> bool:
        """Free the leases of holders not renewed within the TTL (their worker died); True when any was freed."""
        now = time.monotonic()
        stale = [lease for lease, (_, holder) in self.leases.items() if now - self.renewed[holder] > self.ttl_s]
        for lease in stale:
            self.held[self.leases.pop(lease)[0]] -= 1
        return bool(stale)

    async def acquire(self, deployment: str, holder: str) -> int:
        """A lease on one of ``deployment``'s slots, once one is free (unlimited deployments: at once)."""
        changed = self._condition()
        async with changed:
            self.renewed[holder] = time.monotonic()
            while self.held[deployment] >= self.limits.get(deployment, 10**9):
                try:
                    await asyncio.wait_for(changed.wait(), timeout=self.ttl_s / 3)
                except asyncio.TimeoutError:
                    self._expire()
            lease = next(self.ids)
            self.leases[lease] = (deployment, holder)
            self.held[deployment] += 1
            self.peak[deployment] = max(self.peak[deployment], self.held[deployment])
            return lease

    async def release(self, lease: int) -> None:
        changed = self._condition()
        async with changed:
            if lease in self.leases:  # not already expired
                self.held[self.leases.pop(lease)[0]] -= 1
                changed.notify_all()

    async def renew(self, holder: str) -> None:
        self.renewed[holder] = time.monotonic()

    async def peak_held(self) -> dict[str, int]:
        """The most slots of each deployment held at once so far (what a test checks against the limit)."""
        return dict(self.peak)


def limiter_name(state_folder: str) -> str:
    return "helm-dspy-call-limits-" + hashlib.sha256(os.path.abspath(state_folder).encode()).hexdigest()[:12]


def start_limiter(ray, limits: dict[str, int], state_folder: str, ttl_s: float = LEASE_TTL_S):
    """The grid's one named limiter actor (no CPU of its own; it lives as long as the driver's Ray job)."""
    actor = ray.remote(num_cpus=0, max_restarts=0)(CallLimiter)
    return actor.options(name=limiter_name(state_folder), get_if_exists=True).remote(limits, ttl_s)


class _ThreadingServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True  # a connection still open at exit (its child killed with the task) does not block it


class SlotServer:
    """Inside a Ray task: a Unix socket on which the task's child processes ask the limiter actor for slots."""

    def __init__(self, ray, limiter, limits: dict[str, int], ttl_s: float = LEASE_TTL_S):
        self.ray, self.limiter, self.limits, self.ttl_s = ray, limiter, limits, ttl_s
        self.holder = uuid.uuid4().hex
        self.folder = tempfile.mkdtemp(prefix="hdl-")  # short: a socket path is at most 107 bytes
        self.path = os.path.join(self.folder, "slots.sock")
        self.stopped = threading.Event()
        server = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                deployment = self.rfile.readline().decode("utf-8").strip()
                lease = server.ray.get(server.limiter.acquire.remote(deployment, server.holder))
                try:
                    self.wfile.write(b"ok\n")
                    self.wfile.flush()
                    while self.rfile.read(1):  # held until the child closes the connection (or dies)
                        pass
                finally:
                    server.ray.get(server.limiter.release.remote(lease))

        self.server = _ThreadingServer(self.path, Handler)

    def env(self) -> dict[str, str]:
        return socket_limits_env(self.path, self.limits)

    def _renew(self) -> None:
        while not self.stopped.wait(self.ttl_s / 3):
            self.limiter.renew.remote(self.holder)

    def __enter__(self) -> SlotServer:
        threading.Thread(target=self.server.serve_forever, daemon=True, name="call-slots").start()
        threading.Thread(target=self._renew, daemon=True, name="call-slots-renew").start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.server.shutdown()
        self.server.server_close()
        shutil.rmtree(self.folder, ignore_errors=True)
