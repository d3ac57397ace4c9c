"""One ``helm-dspy optimize`` per agent file: a second identical run refuses instead of paying every call again.

The lock is an exclusive, non-blocking ``flock`` on ``<agent>.lock``, held for the whole optimization. The
kernel drops a flock when its holder exits, even by SIGKILL, so a leftover lock file never blocks anyone.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TypeVar

from helm_dspy.errors import UserError

_HELD: ContextVar[ExitStack | None] = ContextVar("helm_dspy_agent_locks", default=None)
T = TypeVar("T")


def lock_path(agent: Path) -> Path:
    return agent.with_name(agent.name + ".lock")


@contextmanager
def agent_lock(agent: Path) -> Iterator[None]:
    """Hold ``<agent>.lock``; a UserError naming the holder's pid when another process holds it."""
    import fcntl  # POSIX only, like HELM's own file locks on these machines

    path = lock_path(agent)
    created = []  # folders this lock makes, deepest first: removed again if nothing else was written there
    folder = path.parent
    while not folder.exists():
        created.append(folder)
        folder = folder.parent
    while True:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except FileNotFoundError:
            continue  # another process's cleanup removed the empty folder just now
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(handle, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(handle)
            raise UserError(
                f"another helm-dspy optimize is writing {agent} (pid {holder}); wait for it to finish, "
                f"or stop it (kill {holder}) and rerun"
            ) from None
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        opened = os.fstat(handle)
        if current is not None and (current.st_dev, current.st_ino) == (opened.st_dev, opened.st_ino):
            break
        os.close(handle)  # the previous holder removed the file between our open and our lock: lock the new one
    try:
        os.ftruncate(handle, 0)
        os.pwrite(handle, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        path.unlink(missing_ok=True)  # still locked here, so nobody else holds the inode we unlink
        os.close(handle)
        for folder in created:
            try:
                folder.rmdir()
            except OSError:  # not empty: the agent, or another optimization's files
                break


def releases_agent_locks(function: Callable[..., T]) -> Callable[..., T]:
    """Locks taken with ``hold_agent_lock`` inside ``function`` are released when it returns or raises."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs) -> T:
        with ExitStack() as stack:
            token = _HELD.set(stack)
            try:
                return function(*args, **kwargs)
            finally:
                _HELD.reset(token)

    return wrapper


def hold_agent_lock(agent: Path) -> None:
    """Take ``agent_lock(agent)`` until the enclosing ``@releases_agent_locks`` function ends."""
    stack = _HELD.get()
    if stack is None:
        raise RuntimeError("hold_agent_lock needs a caller decorated with @releases_agent_locks")
    stack.enter_context(agent_lock(agent))
