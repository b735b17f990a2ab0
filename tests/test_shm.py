"""Shared memory that killed processes leave in /dev/shm is removed, and only that."""

from __future__ import annotations

import multiprocessing
import os
import time
from multiprocessing import shared_memory
from pathlib import Path

import pytest

from parakit.controller.processes import shm

pytestmark = pytest.mark.skipif(not shm.SHM.is_dir(), reason="no /dev/shm on this system")
# The unmapped segments below belong to a uid nobody runs as: a grader running meanwhile (pytest
# -n) sweeps its own user's files, and would take a segment of ours for one its job left.
OWNER = 54321


def _segment() -> tuple[shared_memory.SharedMemory, Path]:
    segment = shared_memory.SharedMemory(create=True, size=4096)
    path = Path(shm.SHM, segment.name.lstrip("/"))
    if os.getuid() == 0:
        os.chown(path, OWNER, -1)
    return segment, path


def _owner() -> set[int]:
    return {OWNER if os.getuid() == 0 else os.getuid()}


def test_a_segment_in_use_is_kept_and_a_left_one_is_removed():
    since = time.time()
    segment, path = _segment()
    try:
        assert path.exists() and path not in shm.leaked(since, _owner())  # mapped: in use
        segment.close()  # unmapped but not unlinked: what a killed process leaves
        assert shm.leaked(since, _owner()) == [path]
        if os.getuid() == 0:  # another user's: not ours to remove (what other tests' killed
            # jobs leave meanwhile, under pytest -n, may be swept: that is ours)
            assert path.name not in shm.sweep(since) and path.exists()
        assert shm.sweep(since, _owner()) == [path.name] and not path.exists()
    finally:
        if path.exists():
            segment.unlink()


def test_what_was_there_before_the_run_is_not_touched():
    segment, path = _segment()
    segment.close()
    try:
        time.sleep(0.2)
        assert shm.sweep(time.time(), _owner()) == [] and path.exists()
    finally:
        segment.unlink()


def test_a_semaphore_in_use_is_kept_though_its_map_names_another_file():
    """glibc makes a POSIX semaphore under a temporary name, maps it, then links it to its
    real name: the map names a deleted file, the inode is the same."""
    since = time.time()
    semaphore = multiprocessing.get_context("spawn").Semaphore()  # named until a child opens it
    made = [p for p in shm.SHM.glob("sem.mp-*") if p.stat().st_ctime >= since - 1]
    assert made, "no named semaphore was made"
    assert not set(made) & set(shm.leaked(since)) and shm.sweep(since) == []
    assert all(p.exists() for p in made)
    del semaphore


def test_a_folder_of_mapped_arrays_is_kept_while_in_use_and_removed_once_left():
    """Memory-mapped arrays kept in RAM (the reference's pool matmul): a killed caller leaves
    the folder; while a process maps a file in it, it is in use."""
    import numpy as np

    since = time.time()
    folder = Path(shm.SHM, f"parakit-test-{os.getpid()}-{time.time_ns()}")
    folder.mkdir()
    try:
        array = np.lib.format.open_memmap(folder / "C.npy", mode="w+", dtype=float, shape=(64,))
        if os.getuid() == 0:
            os.chown(folder, OWNER, -1)
        assert folder not in shm.leaked(since, _owner())  # a file in it is mapped
        del array
        assert shm.leaked(since, _owner()) == [folder]
        assert shm.sweep(since, _owner()) == [folder.name] and not folder.exists()
    finally:
        if folder.exists():
            import shutil

            shutil.rmtree(folder)
