"""Shared-memory files that killed processes leave behind, found and removed.

MPICH's ranks on one host talk through a segment in ``/dev/shm`` (``mpich_shm_*``) that
``MPI_Finalize`` unlinks; multiprocessing's semaphores (``sem.mp-*``) are unlinked by its
resource tracker. A rank or a tracker that is killed (a hang, ``MPI_Abort``, the grader ending
a job) unlinks nothing, and ``/dev/shm`` is memory: a few MB per killed job, which a day of
grading turns into gigabytes and then into the kernel's out-of-memory killer.

A killed ``mpiexec`` also leaves its topology file in ``/tmp`` (:func:`launcher_files`).

After a job's processes have ended, :func:`sweep` removes what the job left: files and
folders in ``/dev/shm`` created since it started, owned by a user its processes ran as, and
mapped by no live process (a folder: no file in it), on two looks (a segment still in use is
mapped by its users; another job's segment is in use while that job runs). Folders are what
code that keeps memory-mapped arrays in RAM leaves when it is killed (the reference's pool
matmul does). It imports only the standard library: the probe runs it on other hosts.
"""

from __future__ import annotations

import os
import shutil
import stat
import time
from collections.abc import Iterable
from pathlib import Path

SHM = Path("/dev/shm")
CLOCK_SLACK = 0.05  # files' times come from the kernel's coarse clock, up to a tick behind
RECHECK = 0.02  # seconds between the two looks (making and mapping a file takes microseconds)


def mapped() -> set[int]:
    """The inodes of every ``/dev/shm`` file that a live process (one we may read) has mapped.

    By inode, not by name: a POSIX semaphore is created under a temporary name, mapped, then
    linked to its real name, so the process's map names a file that no longer exists.
    """
    found = set()
    for maps in Path("/proc").glob("[0-9]*/maps"):
        try:
            text = maps.read_text()
        except OSError:  # gone, or another user's
            continue
        for line in text.splitlines():
            if f" {SHM}/" in line:
                found.add(int(line.split(None, 5)[4]))
    return found


def leaked(since: float, uids: Iterable[int] | None = None) -> list[Path]:
    """Files and folders in ``/dev/shm`` created at or after ``since`` (epoch seconds), owned
    by one of ``uids`` (default: ours) and mapped by no live process, twice in a row: a file
    is made, then mapped, so one just being made is seen mapped on the second look."""
    owners = {os.getuid()} if uids is None else set(uids)
    candidates = _unmapped(since, owners)
    if not candidates:
        return []
    time.sleep(RECHECK)
    again = _unmapped(since, owners)
    return sorted(path for path, inode in candidates.items() if again.get(path) == inode)


def _unmapped(since: float, owners: set[int]) -> dict[Path, int]:
    try:
        entries = list(SHM.iterdir())
    except OSError:  # no /dev/shm (not Linux): nothing can be left there
        return {}
    candidates = {}
    for path in entries:
        try:
            info = path.lstat()
        except OSError:
            continue
        if (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)) and \
                info.st_uid in owners and info.st_ctime >= since - CLOCK_SLACK:
            candidates[path] = info.st_ino
    if not candidates:
        return {}
    in_use = mapped()
    return {path: inode for path, inode in candidates.items()
            if inode not in in_use and not _inodes(path) & in_use}


def _inodes(folder: Path, limit: int = 10000) -> set[int]:
    """The inodes of the files in a folder and below it (at most ``limit``; none for a file),
    never following a link."""
    found: set[int] = set()
    if not folder.is_dir() or folder.is_symlink():
        return found
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                found.add(os.lstat(os.path.join(root, name)).st_ino)
            except OSError:
                continue
            if len(found) >= limit:
                return found
    return found


TMP = Path("/tmp")
# What a killed launcher leaves in /tmp: MPICH's hydra writes its topology there, at a fixed
# place (neither TMPDIR nor MP_TMPDIR moves it), and removes it when it ends normally.
LAUNCHER_FILES = ("hydra_hwloc_xmlfile_",)


def launcher_files(since: float, owners: set[int]) -> list[Path]:
    """The launchers' files in /tmp made at or after ``since`` by ``owners``, open in no live
    process (one we may read)."""
    try:
        names = [n for n in os.listdir(TMP) if n.startswith(LAUNCHER_FILES)]
    except OSError:
        return []
    found = []
    for name in names:
        path = TMP / name
        try:
            info = path.lstat()
        except OSError:
            continue
        if stat.S_ISREG(info.st_mode) and info.st_uid in owners and \
                info.st_ctime >= since - CLOCK_SLACK:
            found.append(path)
    if not found:
        return []
    in_use = set()
    for fds in Path("/proc").glob("[0-9]*/fd"):
        try:
            in_use.update(os.readlink(fd) for fd in fds.iterdir())
        except OSError:
            continue
    return [path for path in found if str(path) not in in_use]


def sweep(since: float, uids: Iterable[int] | None = None) -> list[str]:
    """Remove what :func:`leaked` and :func:`launcher_files` find; return the names removed."""
    removed = []
    owners = {os.getuid()} if uids is None else set(uids)
    for path in launcher_files(since, owners):
        try:
            path.unlink()
            removed.append(path.name)
        except OSError:
            continue
    for path in leaked(since, uids):
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path.name)
        except OSError:
            continue
    return removed
