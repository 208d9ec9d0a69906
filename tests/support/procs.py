"""The processes a server starts, read from /proc: its training children and uvicorn workers
(both are multiprocessing "spawn" children), and their memory."""

from __future__ import annotations

from pathlib import Path

__all__ = ["rss_mib", "spawned_children", "training_children", "worker_pids"]


def spawned_children(pid: int) -> dict[int, bytes]:
    """Direct children of ``pid`` started by multiprocessing's spawn, with their command lines
    (not its resource tracker, which is started otherwise)."""
    found: dict[int, bytes] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):  # gone meanwhile
            continue
        if ppid == pid and b"spawn_main" in cmdline:
            found[int(entry.name)] = cmdline
    return found


def training_children(pid: int) -> list[int]:
    """The training processes of ``pid``: a one-worker server, or one of several workers."""
    return list(spawned_children(pid))


def worker_pids(pid: int) -> list[int]:
    """uvicorn's worker processes under the supervisor ``pid`` (none with one worker, which runs
    in the supervisor itself, so its spawned children are training processes)."""
    found = [p for p, cmd in spawned_children(pid).items() if b"tracker_fd" in cmd]
    return found if len(found) > 1 else []


def rss_mib(pid: int) -> float:
    """Resident memory of the server ``pid`` and its uvicorn workers (not training children)."""
    total = 0
    for p in [pid, *worker_pids(pid)]:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024
