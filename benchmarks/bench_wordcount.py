"""Benchmark (not a test): serial vs parallel word count for each backend on a generated corpus.

    python benchmarks/bench_wordcount.py [--dir /tmp/wordcount-corpus] [--size 200MB]
                                         [--docs 100] [--workers 2] [--repeat 1]

Writes the corpus (seeded, so reruns reuse it when it is already there), then times the
serial count and the reference solution's ``wordcount_{mpi,ipp,pool}`` with ``--workers``
processes, checking each result against the serial count. Times are wall seconds of the call
only: the pool is created, the cluster started and connected, and ``mpiexec`` launched before
the clock starts (MPI: between two barriers, on rank 0). The best of ``--repeat`` runs is shown.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

KIT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(KIT))

from problems.wordcount import generate_corpus, parse_size, serial_count  # noqa: E402
from reference.wordcount import wordcount_ipp, wordcount_mpi, wordcount_pool  # noqa: E402


def corpus(folder: Path, size: int, docs: int) -> list[str]:
    stamp = folder / "corpus.json"
    if stamp.exists() and json.loads(stamp.read_text()) == {"size": size, "docs": docs}:
        return sorted(str(p) for p in folder.glob("doc-*.txt"))
    start = time.perf_counter()
    paths = generate_corpus(folder, docs, size, seed=0)
    seconds = time.perf_counter() - start
    print(f"generated {size / 1e6:.0f} MB in {docs} documents in {seconds:.1f} s "
          f"({size / 1e6 / seconds:.0f} MB/s)", flush=True)
    stamp.write_text(json.dumps({"size": size, "docs": docs}))
    return [str(p) for p in paths]


def best(repeat: int, call) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - start)
    return min(times), result


def mpi_main(paths_file: str, repeat: int) -> None:
    """Run under mpiexec: time wordcount_mpi between barriers; rank 0 prints JSON."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    paths = json.loads(Path(paths_file).read_text()) if comm.rank == 0 else None
    times, total = [], None
    for _ in range(repeat):
        comm.Barrier()
        start = time.perf_counter()
        result = wordcount_mpi(paths, comm)
        comm.Barrier()
        times.append(time.perf_counter() - start)
        total = sum(result.values()) if comm.rank == 0 else None
    if comm.rank == 0:
        print(json.dumps({"seconds": min(times), "words": total}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", default="/tmp/wordcount-corpus")
    parser.add_argument("--size", type=parse_size, default=parse_size("200MB"))
    parser.add_argument("--docs", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--backends", default="mpi,ipp,pool")
    parser.add_argument("--mpi-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mpi_child:
        mpi_main(args.mpi_child, args.repeat)
        return

    os.environ.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    paths = corpus(Path(args.dir), args.size, args.docs)
    total_mb = sum(os.path.getsize(p) for p in paths) / 1e6
    print(f"corpus: {len(paths)} documents, {total_mb:.0f} MB; {os.cpu_count()} CPUs; "
          f"{args.workers} workers", flush=True)
    serial_s, expected = best(args.repeat, lambda: serial_count(paths))
    words = sum(expected.values())
    print(f"{'serial':<8} {serial_s:7.2f} s  {total_mb / serial_s:6.1f} MB/s  "
          f"({words} words, {len(expected)} distinct)", flush=True)

    def report(name: str, seconds: float, ok: bool) -> None:
        print(f"{name:<8} {seconds:7.2f} s  {total_mb / seconds:6.1f} MB/s  "
              f"speedup {serial_s / seconds:4.2f}  {'ok' if ok else 'WRONG RESULT'}", flush=True)

    backends = args.backends.split(",")
    if "pool" in backends:
        with multiprocessing.Pool(args.workers) as pool:
            seconds, result = best(args.repeat, lambda: wordcount_pool(paths, pool))
        report("pool", seconds, result == expected)
    if "mpi" in backends:
        paths_file = Path(args.dir) / "paths.json"
        paths_file.write_text(json.dumps(paths))
        out = subprocess.run(["mpiexec", "-n", str(args.workers), sys.executable, "-m", "mpi4py",
                              __file__, "--mpi-child", str(paths_file), "--repeat",
                              str(args.repeat)], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONPATH": str(KIT)})
        res = json.loads(out.stdout.strip().splitlines()[-1])
        report("mpi", res["seconds"], res["words"] == words)
    if "ipp" in backends:
        import ipyparallel as ipp

        start = time.perf_counter()
        cluster = ipp.Cluster(n=args.workers, log_level=40)
        client = cluster.start_and_connect_sync()
        try:
            client.wait_for_engines(args.workers, timeout=120)
            print(f"(ipyparallel cluster of {args.workers} engines started in "
                  f"{time.perf_counter() - start:.1f} s)", flush=True)
            view = client[:]
            view.apply_sync(sys.path.insert, 0, str(KIT))
            seconds, result = best(args.repeat, lambda: wordcount_ipp(paths, view))
            report("ipp", seconds, result == expected)
        finally:
            client.close()
            cluster.stop_cluster_sync()


if __name__ == "__main__":
    main()
