"""A per-deployment limit on concurrent model calls shared by every process of a grid.

Two ways to count the slots, chosen by the grid and passed to its children in ``CALL_LIMITS_ENV``:

- one machine (``{"dir": ..., "limits": ...}``): a counting file semaphore. Slot ``i`` of deployment ``d`` is an
  exclusive ``flock`` on ``<dir>/<d>.<i>.lock``: at most ``slots`` holders at once across threads and processes
  (optimize and helm-run children). The kernel drops a dead holder's lock, so a killed process never leaks a slot.
- a Ray cluster (``{"socket": ..., "limits": ...}``): the Ray task serves a Unix socket in front of the grid's one
  named limiter actor (``helm_dspy.grid.ray_limits``); a child holds a slot while its connection is open, so a
  dead child frees it too.

The bridge wraps each HELM request in ``call_slot(deployment)``. Imports only the standard library: a child
process needs no Ray to hold a slot.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import socket
import threading
import time
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

CALL_LIMITS_ENV = "HELM_DSPY_CALL_LIMITS"


class SlotTimeout(TimeoutError):
    """No slot became free within the timeout."""


class FileSemaphore:
    """At most ``slots`` holders of ``key`` at once, counted with ``flock`` on one file per slot."""

    def __init__(self, directory: str | os.PathLike, key: str, slots: int, poll_s: float = 0.02):
        if slots < 1:
            raise ValueError("a semaphore needs at least one slot")
        self.directory = Path(directory)
        self.key = "".join(c if c.isalnum() or c in "-_." else "_" for c in key)
        self.slots = slots
        self.poll_s = poll_s

    def _slot_path(self, index: int) -> Path:
        return self.directory / f"{self.key}.{index}.lock"

    def acquire(self, timeout: float | None = None) -> int:
        """A held slot's file descriptor (pass it to ``release``); waits for a free one, polling with jitter."""
        self.directory.mkdir(parents=True, exist_ok=True)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            for index in random.sample(range(self.slots), self.slots):  # spread holders over the slots
                fd = os.open(self._slot_path(index), os.O_RDWR | os.O_CREAT, 0o666)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return fd
                except BlockingIOError:
                    os.close(fd)
            if deadline is not None and time.monotonic() >= deadline:
                raise SlotTimeout(f"no free call slot for {self.key} within {timeout} s")
            time.sleep(self.poll_s * (0.5 + random.random()))

    @staticmethod
    def release(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    @contextlib.contextmanager
    def hold(self, timeout: float | None = None) -> Iterator[None]:
        fd = self.acquire(timeout)
        try:
            yield
        finally:
            self.release(fd)


class SlotRefused(RuntimeError):
    """The limiter server closed the connection without granting a slot."""


@contextlib.contextmanager
def hold_socket_slot(path: str, deployment: str) -> Iterator[None]:
    """One slot of ``deployment`` from the limiter server at ``path``: ask, wait for "ok", hold until closed."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.connect(path)
        connection.sendall(deployment.encode("utf-8") + b"\n")
        with connection.makefile("r", encoding="utf-8") as replies:
            if replies.readline().strip() != "ok":
                raise SlotRefused(f"the call limiter refused a slot for {deployment}")
            yield  # closing the connection frees the slot


def limits_env(directory: str | os.PathLike, limits: dict[str, int]) -> dict[str, str]:
    """The environment a child needs to share the limits through files (empty when no deployment is limited)."""
    if not limits:
        return {}
    return {CALL_LIMITS_ENV: json.dumps({"dir": os.path.abspath(directory), "limits": limits}, sort_keys=True)}


def socket_limits_env(path: str, limits: dict[str, int]) -> dict[str, str]:
    """The environment a child needs to hold slots through a limiter server's socket."""
    if not limits:
        return {}
    return {CALL_LIMITS_ENV: json.dumps({"socket": path, "limits": limits}, sort_keys=True)}


@lru_cache(maxsize=8)
def _parse(value: str) -> tuple[str, str, dict[str, int]]:
    """(``"dir"`` or ``"socket"``, where, limits); a malformed value limits nothing (the grid writes it)."""
    try:
        payload = json.loads(value)
        kind = "socket" if "socket" in payload else "dir"
        return kind, str(payload[kind]), {str(k): int(v) for k, v in payload["limits"].items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        return "dir", "", {}


_held = threading.local()


@contextlib.contextmanager
def call_slot(deployment: str) -> Iterator[None]:
    """Hold one of ``deployment``'s call slots when ``$HELM_DSPY_CALL_LIMITS`` limits it; otherwise nothing.

    Re-entrant per thread: a call made while this thread already holds a slot of the same deployment (a hook at
    two layers) does not wait for a second one, which with one slot would wait forever.
    """
    kind, where, limits = _parse(os.environ.get(CALL_LIMITS_ENV, ""))
    slots = limits.get(deployment)
    held = _held.__dict__.setdefault("deployments", set())
    if not where or not slots or deployment in held:
        yield
        return
    slot = hold_socket_slot(where, deployment) if kind == "socket" else FileSemaphore(where, deployment, slots).hold()
    with slot:
        held.add(deployment)
        try:
            yield
        finally:
            held.discard(deployment)
