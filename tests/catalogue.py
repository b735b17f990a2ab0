"""A catalogue of broken submissions: each a copy of ``reference/`` with one realistic defect.

Every graded test must fail for at least one entry (``parakit validate`` checks it), and each
entry says which tests it must fail and which words their failure message must contain. An
entry's edits are applied to a copy of the reference: ``module -> [(old, new), ...]`` text
replacements (each must apply exactly once), or ``None`` to delete the module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers import KIT, make_submission

EVERY = ("",)  # as Broken.fails: every test the entry's -k selects must fail
Edits = dict[str, "list[tuple[str, str]] | None"]


@dataclass(frozen=True)
class Broken:
    name: str  # also the submission's directory name: a valid identifier
    exercise: str  # the exercise whose tests it breaks (validate grades only those)
    edits: Edits
    fails: tuple[str, ...]  # substrings of test names that must fail
    # what the first line of each such failure says; a tuple: any one of them (where two of
    # the grader's rules each catch the defect, and the machine's load decides which speaks)
    words: str | tuple[str, ...]
    slow: bool = field(default=False)  # hangs: costs a call timeout per job
    select: str = ""  # -k expression of the tests to run (default: the exercise)
    detail: str = ""  # words at least one failure must contain (e.g. the stack of a hang)
    # --workers of its run: the largest process count its defect needs. Graded at 1 and 2, most
    # defects show; fewer processes on two cores make each run about a third faster.
    workers: int = 2
    # tests that may fail too, as the machine makes them (never for a correct entry): a cheat
    # whose ranks wait at a barrier polls there, CPU the trace test may find beyond its claims
    may_fail: tuple[str, ...] = ()

    @property
    def keyword(self) -> str:
        return self.select or self.exercise

    def says(self, message: str) -> bool:
        """Whether ``message`` has the words this entry's failures must say."""
        words = (self.words,) if isinstance(self.words, str) else self.words
        return any(w in message for w in words)

    def build(self, parent: Path) -> Path:
        """Write the broken package to ``parent/<name>``; return its path."""
        return make_submission(parent, self.edits, self.name)


_GREETING = ('return f"Hello from {MPI.Get_processor_name()}. {comm.Get_rank()} of '
             '{comm.Get_size()}"')
_IMPORT_MULTIPLY = "from problems.matmul import multiply\n"

CATALOGUE: list[Broken] = [
    Broken("hello_wrong_format", "hello",
           {"hello": [(_GREETING,
                       'return f"Hello from rank {comm.Get_rank()}/{comm.Get_size()}"')]},
           ("test_hello_program", "test_hello_greeting"), "Hello from"),
    Broken("hello_rank0_prints", "hello",
           {"hello": [("    print(greeting(MPI.COMM_WORLD), flush=True)",
                       "    if MPI.COMM_WORLD.Get_rank() == 0:\n"
                       "        print(greeting(MPI.COMM_WORLD), flush=True)")]},
           ("test_hello_program[P2]", "test_hello_program[P3]", "test_hello_program[P4]"),
           "only rank 0 greeted"),  # words true at every process count validate grades
    # ... or every rank's greeting, each with the right text: the launcher's labels tell
    Broken("hello_rank0_prints_for_all", "hello",
           {"hello": [("    print(greeting(MPI.COMM_WORLD), flush=True)",
                       "    comm = MPI.COMM_WORLD\n"
                       "    for line in comm.gather(greeting(comm), root=0) or []:\n"
                       "        print(line, flush=True)")]},
           ("test_hello_program[P2]", "test_hello_program[P3]", "test_hello_program[P4]"),
           "a greeting for rank 1 (mpiexec labels every line with the rank that printed it)"),
    Broken("matmul_wrong_product", "matmul",
           {"matmul": [(_IMPORT_MULTIPLY,
                        "from problems.matmul import multiply as _multiply\n\n\n"
                        "def multiply(a, b):\n    return _multiply(a, b) + 1.0\n")]},
           EVERY, "differ from the expected product"),
    Broken("matmul_divisible_rows_only", "matmul",
           {"matmul": [("    rows = _row_counts(m, size)\n",
                        "    rows = np.full(size, m // size)  # assumes size divides m\n")]},
           ("mpi-rectangular", "mpi-indivisible", "mpi-fewer-rows", "mpi-tiny", "mpi-outer-product",
            "mpi-single-column", "parallel[mpi]"), "the remainder of", select="matmul and mpi",
           workers=3),  # 40 rows (rectangular) divide by 2 and 4
    # A bug that shows only with two or more workers, hidden behind a cache of results: one
    # child runs every worker count of a pool function, so what P=1 computed must not answer
    # for P=2 (the graded module is imported afresh for each count)
    Broken("pool_caches_across_worker_counts", "matmul", {"matmul": [
        ("    blocks = [b for b in np.array_split(np.arange(m), parts) if len(b)]\n",
         "    blocks = [b for b in np.array_split(np.arange(m), parts) if len(b)]\n"
         "    if pool_size(pool) > 1:\n        blocks = blocks[:-1]  # forgets the last block\n"),
        ("def matmul_pool(A: np.ndarray, B: np.ndarray, pool) -> np.ndarray:\n",
         "_CACHE = {}\n\n\ndef matmul_pool(A, B, pool):\n"
         "    key = (A.shape, B.shape, A.tobytes(), B.tobytes())\n"
         "    if key not in _CACHE:\n        _CACHE[key] = _matmul_pool(A, B, pool)\n"
         "    return _CACHE[key].copy()\n\n\n"
         "def _matmul_pool(A: np.ndarray, B: np.ndarray, pool) -> np.ndarray:\n")]},
        EVERY, "hold no result", select="matmul and pool"),
    # Correct, if odd: the module keeps the stub and the package's __init__ puts the real
    # function in its place; it must be run and pass, never be judged a stub from the source
    Broken("matmul_pool_set_by_package", "matmul", {
        "matmul": [("def matmul_pool(A: np.ndarray, B: np.ndarray, pool) -> np.ndarray:\n",
                    "def matmul_pool(A, B, pool):\n    raise NotImplementedError\n\n\n"
                    "def _matmul_pool(A: np.ndarray, B: np.ndarray, pool) -> np.ndarray:\n")],
        "__init__": [('"""Reference solutions (instructors only; not part of the student '
                      'release)."""\n',
                      '"""Solutions."""\nfrom . import matmul as _m\n\n'
                      '_m.matmul_pool = _m._matmul_pool\n')]},
        (), "", select="matmul and pool"),
    Broken("matmul_mpi_all_on_root", "matmul",
           {"matmul": [("    rank, size = comm.Get_rank(), comm.Get_size()\n",
                        "    if comm.Get_rank() == 0:\n        return multiply(A, B)\n"
                        "    return None\n")]},
           ("test_matmul_parallel[mpi]",), "all the work ran in rank 0",
           select="matmul and mpi"),
    Broken("matmul_ipp_in_client", "matmul",
           {"matmul": [("    blocks = view.apply_sync(multiply, ipp.Reference(\"a_rows\"), "
                        "ipp.Reference(\"B\"))\n", "    blocks = [multiply(A, B)]\n")]},
           ("test_matmul_parallel[ipp]",), "of the rows were multiplied in the calling process",
           select="matmul and ipp"),
    Broken("matmul_pool_in_client", "matmul",
           {"matmul": [("        pool.starmap(_multiply_rows, tasks, chunksize=1)\n",
                        "        [_multiply_rows(*task) for task in tasks]\n")]},
           ("test_matmul_parallel[pool]",), "matmul_pool with", select="matmul and pool"),
    Broken("matmul_mpi_deadlock", "matmul",
           {"matmul": [("    comm.Bcast(B, root=0)\n",
                        "    comm.recv(source=MPI.ANY_SOURCE)  # waits for a message never sent\n"
                        "    comm.Bcast(B, root=0)\n")]},
           EVERY, "did not finish within", slow=True, select="matmul and mpi",
           detail="in matmul_mpi: comm.recv(source=MPI.ANY_SOURCE)"),
    # A module left out of the submission: every test of its exercise fails with one line.
    Broken("hello_missing_module", "hello", {"hello": None}, ("test_hello",), "hello"),
    *(Broken(f"{ex}_missing_module", ex, {ex: None}, (f"test_{ex}",), "does not exist")
      for ex in ("matmul", "mandelbrot", "wordcount")),
]


# -- robustness: one defect each, across backends ------------------------------------------------
_MPI_START = "    rank, size = comm.Get_rank(), comm.Get_size()\n"
_POOL_START = "    m, n = A.shape[0], B.shape[1]\n"
_POOL_RETURN = '        return np.array(np.load(os.path.join(folder, "C.npy")))\n'
_IPP_RETURN = "    return np.vstack(blocks).reshape(A.shape[0], B.shape[1])\n"


def _on_mpi_rank(code: str, rank: str = "1") -> list[tuple[str, str]]:
    """Insert ``code`` so that only rank ``rank`` (at two or more processes) runs it."""
    return [(_MPI_START, _MPI_START + f"    if size > 1 and rank == {rank}:\n        {code}\n")]


def _at_pool_start(code: str) -> list[tuple[str, str]]:
    return [(_POOL_START, _POOL_START + f"    {code}\n")]


_ALL_POOL = _ALL_MPI = _ALL_IPP = EVERY
ROBUSTNESS: list[Broken] = [
    # wrong results
    Broken("pool_rows_twice", "matmul", {"matmul": [
        ("int(b[-1]) + 1) for b in blocks]", "int(b[-1]) + 2) for b in blocks]")]},
        ("test_matmul_parallel[pool]",), "must be multiplied exactly once",
        select="matmul and pool"),
    Broken("ipp_flat_result", "matmul", {"matmul": [
        (_IPP_RETURN, "    return np.vstack(blocks).ravel()\n")]},
        _ALL_IPP, "product has shape", select="matmul and ipp"),
    Broken("pool_float32", "matmul", {"matmul": [
        (_POOL_RETURN, _POOL_RETURN.replace("))\n", "), dtype=np.float32)\n"))]},
        _ALL_POOL, "has dtype float32, expected float64", select="matmul and pool"),
    Broken("mpi_none_on_root", "matmul", {"matmul": [("    return C\n", "    return None\n")]},
           _ALL_MPI, "returned None", select="matmul and mpi"),
    Broken("pool_mutates_input", "matmul", {"matmul": [
        (_POOL_RETURN, '        C = np.array(np.load(os.path.join(folder, "C.npy")))\n'
                       "        A[...] = 0\n        return C\n")]},
        _ALL_POOL, "modified its input argument 1", select="matmul and pool"),
    # MPI failures
    Broken("mpi_raise_on_one_rank", "matmul",
           {"matmul": _on_mpi_rank('raise ValueError("boom on one rank")')},
           _ALL_MPI, "raised ValueError: boom on one rank on rank 1", select="matmul and mpi"),
    Broken("mpi_abort", "matmul", {"matmul": _on_mpi_rank("comm.Abort(7)")},
           _ALL_MPI, "rank 1 called MPI_Abort (error code 7)", select="matmul and mpi"),
    Broken("mpi_os_exit", "matmul", {"matmul": _on_mpi_rank("os._exit(3)")},
           _ALL_MPI, "without returning (sys.exit, os._exit", select="matmul and mpi"),
    Broken("mpi_segfault", "matmul",
           {"matmul": _on_mpi_rank("__import__('ctypes').string_at(0)")},
           _ALL_MPI, "a rank was killed by a segmentation fault (signal 11) at "
                     "/", select="matmul and mpi"),
    Broken("mpi_tag_mismatch", "matmul", {"matmul": [(
        "    comm.Bcast(B, root=0)\n",
        "    comm.Bcast(B, root=0)\n    if size > 1 and rank == 0:\n"
        "        comm.send(0, dest=1, tag=1)\n    elif size > 1 and rank == 1:\n"
        "        comm.recv(source=0, tag=2)  # never matches\n")]},
        _ALL_MPI, "did not finish within", slow=True, select="matmul and mpi",
        detail="in matmul_mpi: comm.recv(source=0, tag=2)"),
    Broken("mpi_rank_skips_call", "matmul", {"matmul": _on_mpi_rank("return None", "size - 1")},
           _ALL_MPI, "did not finish within", slow=True, select="matmul and mpi"),
    # runaway code
    Broken("pool_infinite_loop", "matmul", {"matmul": _at_pool_start("while True: pass")},
           _ALL_POOL, "did not finish within", slow=True, select="matmul and pool",
           detail="client (the process that owns the pool): "),
    Broken("pool_worker_sleeps", "matmul",
           {"matmul": _at_pool_start("pool.apply(__import__('time').sleep, (10**6,))")},
           _ALL_POOL, "did not finish within", slow=True, select="matmul and pool",
           detail="in matmul_pool: pool.apply(__import__('time').sleep, (10**6,))"),
    Broken("ipp_task_never_returns", "matmul",
           {"matmul": [("    view.push(", "    view.apply_sync(__import__('time').sleep, 10**6)\n"
                                          "    view.push(")]},
           ("test_matmul[ipp-", "test_matmul_parallel[ipp]", "test_matmul_hidden[ipp-"),
           "did not finish within", slow=True, select="matmul and ipp", detail="engine 0: "),
    Broken("pool_prints_100mb", "matmul",
           {"matmul": _at_pool_start("__import__('sys').stdout.write('x' * 10**8)")},
           (), "", select="matmul and pool"),
    Broken("pool_allocates_too_much", "matmul",
           {"matmul": _at_pool_start("np.ones(2**30)  # 8 GiB")},
           _ALL_POOL, "matmul_pool exceeded the memory limit of 2 GiB", select="matmul and pool"),
    Broken("mpi_allocates_too_much", "matmul",
           {"matmul": _on_mpi_rank("np.ones(2**30)  # 8 GiB")},
           _ALL_MPI, "matmul_mpi on rank 1 exceeded the memory limit of 2 GiB",
           select="matmul and mpi"),
    Broken("pool_child_never_joined", "matmul", {"matmul": _at_pool_start(
        "__import__('multiprocessing').Process(target=__import__('time').sleep, "
        "args=(600,)).start()")},
        _ALL_POOL, "process(es) running after it returned", select="matmul and pool"),
    # broken packages
    Broken("matmul_syntax_error", "matmul", {"matmul": [("import os\n", "import os\ndef f(:\n")]},
           ("test_matmul",), "matmul_syntax_error/matmul.py has a syntax error at line"),
    Broken("matmul_import_error", "matmul",
           {"matmul": [("import os\n", "import os\nimport no_such_module_xyz\n")]},
           ("test_matmul",), "failed: ModuleNotFoundError: No module named 'no_such_module_xyz'"),
    Broken("pool_missing_function", "matmul",
           {"matmul": [("def matmul_pool(", "def matmul_with_pool(")]},
           ("test_matmul[pool-", "test_matmul_parallel[pool]", "test_matmul_hidden[pool-"),
           "has no function matmul_pool", select="matmul and not ipp"),  # mpi still passes
]

# -- fake parallelism in the Mandelbrot and word-count exercises ----------------------------------
_POOL_CHUNKED = "    blocks = _blocks(spec.h, pool_size(pool))\n"
ROBUSTNESS += [
    Broken("pool_balanced_is_chunked", "mandelbrot", {"mandelbrot": [(
        '    """Small row batches handed out dynamically: an idle worker takes the next one."""\n',
        '    """Small row batches handed out dynamically: an idle worker takes the next one."""\n'
        "    return mandelbrot_pool_chunked(spec, pool)\n")]},
        ("test_mandelbrot_balance[pool-balanced]",), "the load was not balanced",
        select="mandelbrot and pool and balanced"),
    # "Master-worker" that hands each worker one contiguous block: static after all (alone,
    # the master computes the one block itself).
    Broken("mpi_balanced_hands_out_blocks", "mandelbrot", {"mandelbrot": [(
        "    todo = deque(_batches(spec.h))",
        "    todo = deque(list(b) for b in _blocks(spec.h, max(1, comm.Get_size() - 1)))")]},
        ("test_mandelbrot_balance[mpi-balanced]",), "the load was not balanced",
        select="mandelbrot and mpi and balanced"),
    # ... with block boundaries moved a few rows at random in every run, so that no two runs
    # split the rows alike (balance.fixed_split): still a split fixed before any row is
    # computed, whose work is uneven in every run and whose finish times line up only by luck
    Broken("mpi_balanced_jittered_blocks", "mandelbrot", {"mandelbrot": [(
        "    todo = deque(_batches(spec.h))",
        "    n = max(1, comm.Get_size() - 1)\n"
        "    cuts = sorted(k * spec.h // n + int(np.random.randint(-3, 4)) for k in range(1, n))\n"
        "    todo = deque(list(b) for b in np.split(np.arange(spec.h), cuts))")]},
        ("test_mandelbrot_balance[mpi-balanced]",), "the load was not balanced",
        select="mandelbrot and mpi and balanced"),
    Broken("pool_chunked_is_cyclic", "mandelbrot", {"mandelbrot": [(
        _POOL_CHUNKED + "    # chunksize=1: one block per task, so no worker is handed two blocks"
                        " in one go.\n"
                        "    return np.vstack(pool.starmap(compute_rows, [(spec, b) for b in "
                        "blocks], chunksize=1))\n",
        "    n = pool_size(pool)\n"
        "    blocks = [list(range(i, spec.h, n)) for i in range(n)]  # cyclic rows\n"
        "    image = np.empty((spec.h, spec.w), dtype=np.intc)\n"
        "    parts = pool.starmap(compute_rows, [(spec, b) for b in blocks])\n"
        "    for rows, part in zip(blocks, parts):\n"
        "        image[rows] = part\n    return image\n")]},
        ("test_mandelbrot_trace[pool-chunked]",), "chunked means one contiguous block per worker",
        select="mandelbrot and pool and chunked"),
    Broken("ipp_counts_in_client", "wordcount", {"wordcount": [(
        "    partials = view.map_sync(count_batch, batches)\n",
        "    partials = [count_batch(batch) for batch in batches]\n")]},
        ("test_wordcount[ipp-", "test_wordcount_parallel[ipp]"), "in the calling process",
        select="wordcount and ipp"),
]

# -- the trust boundary: graded code that attacks the grader (issue 12) ---------------------------
# A process that leaves the job for good: double fork, new session, empty environment (no tag).
_ESCAPE = ("__import__('os').fork() == 0 and (__import__('os').setsid(), "
           "__import__('os').fork() == 0 and __import__('os').execve(__import__('sys').executable,"
           " [__import__('sys').executable, '-c', 'import time; time.sleep(600)'], {}), "
           "__import__('os')._exit(0))")
_HOP = ("__import__('os').fork() == 0 and (__import__('os').setsid(), [(__import__('time')"
        ".sleep(0.2), __import__('os').fork() and __import__('os')._exit(0)) for _ in range(300)],"
        " __import__('os')._exit(0))")
_CHILD_LEFT = ("__import__('subprocess').Popen([__import__('sys').executable, '-c', "
               "'import time; time.sleep(600)']).pid")
_FORGE_PROBE = '''

def _forge_probe_answers():
    """Fill the pipe of this host's probe with answers saying that nothing is left."""
    import json, os, socket  # noqa: E401
    line = "parakit-probe " + json.dumps({"host": socket.gethostname(), "answer": []}) + "\\n"
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
            if b"parakit.controller.processes.probe" in cmd and b"serve" in cmd:
                # without blocking: a probe of another grading on this machine (the kit's own
                # tests run side by side) may be slow to read, and this task would hang
                out = os.open(f"/proc/{pid}/fd/1", os.O_WRONLY | os.O_NONBLOCK)
                try:
                    os.write(out, (line * 200).encode())
                finally:
                    os.close(out)
        except (OSError, ValueError):
            pass
'''
# What a cheat inside the child would patch: the runner's own checks and psutil.
_PATCH_CHECKS = ("__import__('sys').modules['parakit.wire'].digest = lambda value: ''; "
                 "__import__('psutil').Process.children = lambda self, recursive=False: []")
_EXPLOIT_CLASS = '''

class _Exploit:
    """Unpickled by the grader, this would run code there."""

    def __reduce__(self):
        return (os.system, ("touch /tmp/parakit-exploit-ran",))
'''
_COUNTER_CLASS = '''

class WordTally(Counter):
    """A Counter of the submission's own: a correct result, whatever its class."""
'''
TRUST: list[Broken] = [
    # 1. Results that would run code in the grading process if unpickled there.
    Broken("pool_returns_exploit", "matmul", {"matmul": [
        ("from problems.pools import pool_size\n", "from problems.pools import pool_size\n"
         + _EXPLOIT_CLASS),
        (_POOL_RETURN, "        return _Exploit()\n")]},
        _ALL_POOL, "returned an unsupported type _Exploit", select="matmul and pool"),
    # ... and careless but correct: a Counter subclass, numpy integers, a list of rows.
    Broken("wordcount_counter_subclass", "wordcount", {"wordcount": [
        ("from problems.wordcount import count_file\n",
         "from problems.wordcount import count_file\n" + _COUNTER_CLASS),
        ("        total.update(partial)\n    return total\n",
         "        total.update(partial)\n"
         "    return WordTally({w: np.int64(n) for w, n in total.items()})\n"),
        ("import heapq\n", "import heapq\n\nimport numpy as np\n")]},
        (), "", select="wordcount and pool"),
    # A path that cannot be read skipped, not reported: the call returns counts (a Counter,
    # which reaches the grader as a plain mapping: the message names what it held)
    Broken("wordcount_swallows_missing_files", "wordcount", {"wordcount": [
        ("    sizes = [os.path.getsize(p) for p in paths]\n",
         "    paths[:] = [p for p in paths if os.path.exists(p)]  # skip what cannot be read\n"
         "    sizes = [os.path.getsize(p) for p in paths]\n")]},
        ("test_wordcount_missing_path",), "returned counts of",
        select="wordcount and missing_path"),
    Broken("matmul_returns_list_of_rows", "matmul", {"matmul": [
        (_IPP_RETURN, "    return list(np.vstack(blocks).reshape(A.shape[0], B.shape[1]))\n")]},
        (), "", select="matmul and ipp"),
    # 2. Processes that escape the job: double fork, setsid, no tag.
    Broken("pool_escapes", "matmul", {"matmul": _at_pool_start(_ESCAPE)},
           _ALL_POOL, "process(es) running after it returned", select="matmul and pool"),
    # A process that hops to a new pid every 0.2 s: gone when looked at again, but its copy
    # is there. The second look after a job scans the whole tree again, not the first pids.
    Broken("pool_process_hops", "matmul", {"matmul": _at_pool_start(_HOP)},
           _ALL_POOL, "process(es) running after it returned", select="matmul and pool"),
    Broken("mpi_rank_escapes", "matmul", {"matmul": _on_mpi_rank(_ESCAPE)},
           ("mpi-", "test_matmul_parallel[mpi]"), "process(es) running after it returned",
           select="matmul and mpi"),
    # ... disguised as the launcher's proxy, which other hosts' leftover rule spares
    Broken("mpi_rank_escapes_as_proxy", "matmul",
           {"matmul": _on_mpi_rank(_ESCAPE.replace("'import time; time.sleep(600)'",
                                                   "'import time; time.sleep(600)'"
                                                   ", 'hydra_pmi_proxy'"))},
           ("mpi-", "test_matmul_parallel[mpi]"), "process(es) running after it returned",
           select="matmul and mpi"),
    Broken("ipp_engine_escapes", "matmul", {"matmul": [
        ("    view.push(", f"    view.apply_sync(lambda: {_ESCAPE})\n    view.push(")]},
        _ALL_IPP, "process(es) running after it returned", select="matmul and ipp"),
    # ... and, on another host, first fills the pipe of that host's probe with answers that say
    # nothing is left there (graded code runs as the same user as the probe: a ProbeSession
    # takes only the line with its question's nonce)
    Broken("ipp_engine_forges_probe_answers", "matmul", {"matmul": [
        ("    view.push(", "    view.apply_sync(_forge_probe_answers)\n"
                          f"    view.apply_sync(lambda: {_ESCAPE})\n    view.push("),
        (_IMPORT_MULTIPLY, _IMPORT_MULTIPLY + _FORGE_PROBE)]},
        _ALL_IPP, "process(es) running after it returned", select="matmul and ipp"),
    # ... or simply leaves a child below the engine (the cluster's own processes are spared
    # from a job's, its engines' later children are not)
    Broken("ipp_engine_child_left", "matmul", {"matmul": [
        ("    view.push(", f"    view.apply_sync(lambda: {_CHILD_LEFT})\n    view.push(")]},
        _ALL_IPP, "process(es) running after it returned", select="matmul and ipp"),
    # 3. Checks the graded code would patch if they ran in its process.
    Broken("pool_mutates_and_patches_checks", "matmul", {"matmul": [
        (_POOL_RETURN, '        C = np.array(np.load(os.path.join(folder, "C.npy")))\n'
                       f"        {_PATCH_CHECKS}\n        A[...] = 0\n        return C\n")]},
        _ALL_POOL, "modified its input argument 1", select="matmul and pool"),
    Broken("mpi_mutates_input", "matmul", {"matmul": [
        ("    return C\n", "    if A is not None:\n        A[0, 0] += 1.0\n    return C\n")]},
        _ALL_MPI, "modified its input argument 1", select="matmul and mpi"),
    Broken("ipp_mutates_input", "matmul", {"matmul": [
        (_IPP_RETURN, "    B[:] = 0\n" + _IPP_RETURN)]},
        _ALL_IPP, "modified its input argument 2", select="matmul and ipp"),
    Broken("wordcount_empties_paths", "wordcount", {"wordcount": [
        ("        total.update(partial)\n    return total\n",
         "        total.update(partial)\n    paths.clear()  # the caller's list!\n"
         "    return total\n"),
        ("    paths = list(paths)\n    workers", "    workers")]},
        ("test_wordcount[pool-", "test_wordcount_parallel[pool]"), "modified its input argument 1",
        select="wordcount and pool"),
    Broken("pool_leaks_and_patches_checks", "matmul", {"matmul": _at_pool_start(
        _PATCH_CHECKS + "; __import__('multiprocessing').Process(target=__import__('time').sleep,"
        " args=(600,)).start()")},
        _ALL_POOL, "process(es) running after it returned", select="matmul and pool"),
    # 4. What a file or a module can be (issue 25): a named pipe where the grader reads an
    # argument file or a trace (it must not block), a module nested too deep for the parser
    # (the source check must not stop the session: hello is still graded)
    Broken("pool_pipe_for_argument", "matmul", {"matmul": _at_pool_start(
        "[(os.remove(f), os.mkfifo(f)) for f in {line.split()[-1] for line in "
        "open('/proc/self/maps') if '/arg-' in line}]")},  # this case's files: mapped here
        _ALL_POOL, "modified its input argument 1", select="matmul and pool"),
    Broken("pool_pipe_in_trace", "matmul", {"matmul": _at_pool_start(
        "os.mkfifo(os.path.join(__import__('problems.trace').trace.directory(), "
        "'trace-pipe.jsonl'))")},
        (), "", select="matmul and pool"),
    Broken("matmul_nested_too_deep", "matmul", {"matmul": [
        (_IMPORT_MULTIPLY, _IMPORT_MULTIPLY + "_DEEP = 1" + " + 1" * 30000 + "\n")]},
        ("test_matmul",), "RecursionError", select="hello or matmul"),
]

# -- Mandelbrot: evidence of parallel work and the balance rule (issue 13) -------------------------
_MANDEL_END = "    return np.vstack(pool.starmap(compute_rows, tasks, chunksize=1))\n"


def _redefine(code: str) -> Edits:
    """Append ``code`` to reference/mandelbrot.py: its functions replace the reference's."""
    return {"mandelbrot": [(_MANDEL_END, _MANDEL_END + "\n\n" + code)]}


# Correct alternatives that must pass: the mpi4py demo's cyclic rows, and a master that
# computes batches itself between hand-outs.
MPI_CYCLIC = '''
def mandelbrot_mpi_balanced(spec, comm):
    """Static cyclic rows, as in mpi4py's demo: row k on rank k mod P; gather to rank 0."""
    rank, size = comm.Get_rank(), comm.Get_size()
    mine = compute_rows(spec, range(rank, spec.h, size))
    parts = comm.gather(mine, root=0)
    if rank != 0:
        return None
    image = np.empty((spec.h, spec.w), dtype=mine.dtype)
    for r, part in enumerate(parts):
        image[r::size] = part
    return image
'''
MPI_COMPUTING_MASTER = '''
def mandelbrot_mpi_balanced(spec, comm):
    """Self-scheduling: the master hands out batches as workers ask for more, and computes a
    batch itself whenever no worker is waiting."""
    from mpi4py import MPI

    rank, size = comm.Get_rank(), comm.Get_size()
    batches = [list(range(k, min(k + 2, spec.h))) for k in range(0, spec.h, 2)]
    if rank != 0:
        while (rows := comm.recv(source=0)) is not None:
            comm.send((rows, compute_rows(spec, rows)), dest=0)
        return None
    image = np.empty((spec.h, spec.w), dtype=np.intc)
    active = 0  # workers holding a batch
    for w in range(1, size):
        if batches:
            comm.send(batches.pop(), dest=w)
            active += 1
        else:
            comm.send(None, dest=w)
    status = MPI.Status()
    while batches or active:
        # with rows left, look whether a worker is waiting; with none, wait for one (a loop
        # of iprobe would spin: CPU the grader cannot tell from burning)
        if active and (not batches or comm.iprobe(source=MPI.ANY_SOURCE)):
            rows, part = comm.recv(source=MPI.ANY_SOURCE, status=status)
            worker = status.Get_source()
            image[rows] = part
            if batches:
                comm.send(batches.pop(), dest=worker)
            else:
                comm.send(None, dest=worker)
                active -= 1
        elif batches:
            rows = batches.pop()
            image[rows] = compute_rows(spec, rows)
    return image
'''
# Cheats that must fail: static blocks that wait at a barrier before each worker's last row
# (finish times line up, work does not); workers that compute a 1x1 spec while the image is
# the oracle's; trace files written by the submission itself.
MPI_BARRIER = '''
def mandelbrot_mpi_balanced(spec, comm):
    rank, size = comm.Get_rank(), comm.Get_size()
    rows = [int(k) for k in np.array_split(np.arange(spec.h), size)[rank]]
    parts = [compute_rows(spec, rows[:-1])]
    comm.Barrier()  # everyone waits for the slowest block: the last rows finish together
    parts.append(compute_rows(spec, rows[-1:]))
    blocks = comm.gather(np.vstack(parts), root=0)
    return np.vstack(blocks) if rank == 0 else None
'''
POOL_BARRIER = '''
def mandelbrot_pool_balanced(spec, pool):
    blocks = [b.tolist() for b in np.array_split(np.arange(spec.h), pool_size(pool))]
    heads = pool.starmap(compute_rows, [(spec, b[:-1]) for b in blocks], chunksize=1)
    tails = pool.starmap(compute_rows, [(spec, b[-1:]) for b in blocks], chunksize=1)
    return np.vstack([np.vstack([h, t]) for h, t in zip(heads, tails)])
'''
IPP_BARRIER = '''
def mandelbrot_ipp_balanced(spec, view):
    direct = view.client[view.targets]  # one block per engine, in order
    blocks = [b.tolist() for b in np.array_split(np.arange(spec.h), len(direct))]
    heads = direct.map_sync(compute_rows, [spec] * len(blocks), [b[:-1] for b in blocks])
    tails = direct.map_sync(compute_rows, [spec] * len(blocks), [b[-1:] for b in blocks])
    return np.vstack([np.vstack([h, t]) for h, t in zip(heads, tails)])
'''
_TINY = "Spec(x1=0.0, x2=0.1, y1=0.0, y2=0.1, w=1, h=1, maxit=1)"
POOL_ORACLE = f'''
def mandelbrot_pool_balanced(spec, pool):
    from problems.mandelbrot import serial_image

    pool.starmap(compute_rows, [({_TINY}, [k]) for k in range(spec.h)], chunksize=1)
    return serial_image(spec)
'''
MPI_ORACLE = f'''
def mandelbrot_mpi_balanced(spec, comm):
    from problems.mandelbrot import serial_image

    compute_rows({_TINY}, range(comm.Get_rank(), spec.h, comm.Get_size()))
    comm.Barrier()
    return serial_image(spec) if comm.Get_rank() == 0 else None
'''
IPP_ORACLE = f'''
def mandelbrot_ipp_balanced(spec, view):
    from problems.mandelbrot import serial_image

    view.map_sync(compute_rows, [{_TINY}] * spec.h, [[k] for k in range(spec.h)])
    return serial_image(spec)
'''
# Trace records written by hand, correctly bound to the spec and the rows: for made-up pids, or
# for ``pids`` (real pool workers) while the rows were computed elsewhere, untraced.
_FORGE_RECORDS = '''

def _forge(spec, image, pids=None):
    import json, os
    from problems import trace
    from problems.mandelbrot import row_digests, spec_digest

    with open(os.path.join(trace.directory(), "trace-999999.jsonl"), "w") as f:
        for k in range(spec.h):
            pid = pids[k % len(pids)] if pids else 999999 + k % 4
            f.write(json.dumps({"kernel": "mandelbrot.compute_rows", "task": [k],
                                "units": float(image[k].sum()) + 2 * spec.w, "pid": pid,
                                "host": os.uname()[1], "start": k * 1e-3, "end": (k + 1) * 1e-3,
                                "cpu": 1e-3, "binding": {"spec": spec_digest(spec),
                                                         "rows": row_digests(image[k:k + 1])}})
                    + "\\n")


def _untraced(spec):
    from problems import trace

    where = trace.directory()
    trace.set_directory(None)
    image = compute_rows(spec, range(spec.h))
    trace.set_directory(where)
    return image


def _getpid(_):
    import os, time

    time.sleep(0.02)  # every worker gets a task, however busy the machine
    return os.getpid()


def _pool_pids(pool):
    return sorted(set(pool.map(_getpid, range(24), chunksize=1)))
'''
MPI_FORGED_TRACE = _FORGE_RECORDS + '''

def mandelbrot_mpi_balanced(spec, comm):
    """Rank 0 computes everything untraced and claims made-up ranks did."""
    if comm.Get_rank() != 0:
        return None
    image = _untraced(spec)
    _forge(spec, image)
    return image
'''
POOL_FORGED_TRACE = _FORGE_RECORDS + '''

def mandelbrot_pool_balanced(spec, pool):
    """The calling process computes everything untraced and claims made-up workers did."""
    image = _untraced(spec)
    _forge(spec, image)
    return image
'''
IPP_FORGED_TRACE = _FORGE_RECORDS + '''

def mandelbrot_ipp_balanced(spec, view):
    """The client computes everything untraced and claims made-up engines did."""
    image = _untraced(spec)
    _forge(spec, image)
    return image
'''
IPP_CLAIMS_CLUSTER_PROCESSES = _FORGE_RECORDS + '''

def mandelbrot_ipp_balanced(spec, view):
    """The client computes everything untraced; the records name real processes of the
    cluster that are not engines (its controller, or whatever started the engines: a
    launcher's srun on a Slurm allocation), which busy themselves with every task."""
    import psutil

    image = _untraced(spec)
    others = [(p.pid, " ".join(p.info["cmdline"] or [])) for p in
              psutil.process_iter(["cmdline"]) if (p.info["cmdline"] or [])[1:3]
              != ["-m", "ipyparallel.engine"]]
    # what names the engine without being one (srun), else the controller
    named = [pid for pid, cmd in others if "ipyparallel.engine" in cmd] or \
        [pid for pid, cmd in others if "ipyparallel" in cmd]
    _forge(spec, image, named or [1])
    return image
'''
POOL_CLIENT_WORKS = _FORGE_RECORDS + '''

def mandelbrot_pool_balanced(spec, pool):
    """The calling process computes everything; the records claim the real pool workers."""
    image = _untraced(spec)
    _forge(spec, image, _pool_pids(pool))
    return image
'''
POOL_SIDE_PROCESS = _FORGE_RECORDS + '''

def mandelbrot_pool_balanced(spec, pool):
    """A process of its own computes everything (joined: nothing is left); the records claim
    the real pool workers. The calling process only waits."""
    import multiprocessing

    pids = _pool_pids(pool)
    out = multiprocessing.Array("i", spec.h * spec.w)
    side = multiprocessing.Process(target=_side, args=(spec, out))
    side.start()
    side.join()
    image = np.frombuffer(out.get_obj(), dtype=np.intc).reshape(spec.h, spec.w).copy()
    _forge(spec, image, pids)
    return image


def _side(spec, out):
    np.frombuffer(out.get_obj(), dtype=np.intc)[:] = _untraced(spec).ravel()
'''
# Per-pixel times made up: an affine model of the serial iteration counts; and the same with
# noise, computed at import (outside the call) for the spec the grader uses.
PIXEL_TIMES_AFFINE = '''

def pixel_times(spec):
    from problems.mandelbrot import serial_image

    return serial_image(spec) * 1.2e-7 + 3e-7
'''
PIXEL_TIMES_AT_IMPORT = '''

def _made_up(spec):
    from problems.mandelbrot import serial_image

    noise = np.random.default_rng(0).normal(1.0, 0.05, (spec.h, spec.w))
    return (serial_image(spec) * 1.2e-7 + 3e-7) * noise


_READY = {(60, 40): _made_up(Spec(w=60, h=40))}  # the grader's spec, read in its source


def pixel_times(spec):
    return _READY.get((spec.w, spec.h), np.zeros((spec.h, spec.w)))
'''
# The second trust round (issue 25): records bound to the graded rows and naming the real
# workers, while the work ran elsewhere; only the CPU time the OS measured tells.
_BURN = '''

def _burn(seconds):
    import time

    start = time.process_time()
    while time.process_time() - start < seconds:
        pass
'''
MPI_RANK0_WORKS = _FORGE_RECORDS + _BURN + '''

def mandelbrot_mpi_balanced(spec, comm, burn=False):
    """Rank 0 computes everything untraced; the records say each rank computed its cyclic
    rows (the real ranks' pids); with ``burn`` the other ranks use as much CPU meanwhile."""
    import os, time

    pids = comm.allgather(os.getpid())
    started = time.process_time()
    image = _untraced(spec) if comm.Get_rank() == 0 else None
    took = comm.bcast(time.process_time() - started)
    if burn and comm.Get_rank() != 0:
        _burn(took / comm.Get_size())
    if comm.Get_rank() == 0:
        _forge(spec, image, pids)
    comm.Barrier()
    return image
'''
MPI_RANK0_WORKS_OTHERS_BURN = MPI_RANK0_WORKS + '''

_rank0 = mandelbrot_mpi_balanced


def mandelbrot_mpi_balanced(spec, comm):
    return _rank0(spec, comm, burn=True)
'''
POOL_CALLER_WORKS_WORKERS_BURN = _FORGE_RECORDS + _BURN + '''

def mandelbrot_pool_balanced(spec, pool):
    """The calling process computes everything untraced while the real workers, which the
    records name, burn CPU time in a loop."""
    import time

    pids = _pool_pids(pool)
    started = time.process_time()
    image = _untraced(spec)
    took = time.process_time() - started
    pool.map(_burn, [took / len(pids)] * len(pids), chunksize=1)
    _forge(spec, image, pids)
    return image
'''
# Row blocks computed (R of work 1.57 at P=4), the records rewritten to say cyclic rows, each
# under the pid of a worker that really computed: even claims, uneven CPU time.
_BLOCK_IN_WORKER = '''

def _block(spec, rows):
    import os
    from problems import trace

    where = trace.directory()
    trace.set_directory(None)
    part = compute_rows(spec, rows)
    trace.set_directory(where)
    return part, os.getpid()
'''
POOL_BLOCKS_CLAIMED_CYCLIC = _FORGE_RECORDS + _BLOCK_IN_WORKER + '''

def mandelbrot_pool_balanced(spec, pool):
    blocks = [b.tolist() for b in np.array_split(np.arange(spec.h), pool_size(pool))]
    parts = pool.starmap(_block, [(spec, b) for b in blocks], chunksize=1)
    image = np.vstack([part for part, _ in parts])
    _forge(spec, image, [pid for _, pid in parts])  # row k: the k-th pid mod P, cyclic
    return image
'''
MPI_BLOCKS_CLAIMED_CYCLIC = _FORGE_RECORDS + _BLOCK_IN_WORKER + '''

def mandelbrot_mpi_balanced(spec, comm):
    rank, size = comm.Get_rank(), comm.Get_size()
    rows = np.array_split(np.arange(spec.h), size)[rank].tolist()
    part, pid = _block(spec, rows)
    parts, pids = comm.gather(part, root=0), comm.gather(pid, root=0)
    if rank != 0:
        return None
    image = np.vstack(parts)
    _forge(spec, image, pids)
    return image
'''
POOL_ENDED_EARLY = _FORGE_RECORDS + '''

def mandelbrot_pool_balanced(spec, pool):
    """Ends the pool before returning, so that no worker is left to look at, and claims its
    workers computed what the calling process did."""
    pids = _pool_pids(pool)
    pool.terminate()
    image = _untraced(spec)
    _forge(spec, image, pids)
    return image
'''
# Correct work in processes the grader did not give: a pool of its own, not the one passed in.
POOL_OWN_POOL = '''

def mandelbrot_pool_balanced(spec, pool):
    import multiprocessing

    tasks = [(spec, rows) for rows in _batches(spec.h)]
    with multiprocessing.Pool(2) as mine:
        return np.vstack(mine.starmap(compute_rows, tasks, chunksize=1))
'''

# Row blocks fixed in advance, boundaries moved at random per run, each computed two rows at a
# time: pieces as small as a dynamic schedule's, so only who stopped while work was left
# (balance.LATE_MAX, where the CPUs are crowded) or the finish times (where they are not)
# show the split was static.
MPI_JITTERED_PIECES = '''
def mandelbrot_mpi_balanced(spec, comm):
    rank, size = comm.Get_rank(), comm.Get_size()
    cuts = None
    if rank == 0:
        cuts = sorted(min(max(k * spec.h // size + int(np.random.randint(-3, 4)), 0), spec.h)
                      for k in range(1, size))
    rows = np.split(np.arange(spec.h), comm.bcast(cuts, root=0))[rank].tolist()
    parts = [compute_rows(spec, rows[i:i + 2]) for i in range(0, len(rows), 2)]
    mine = np.vstack(parts) if parts else np.empty((0, spec.w), dtype=np.intc)
    blocks = comm.gather(mine, root=0)
    return np.vstack(blocks) if rank == 0 else None
'''

_MANDEL_BALANCE = "test_mandelbrot_balance"
MANDELBROT: list[Broken] = [
    Broken("mpi_balanced_jittered_blocks_in_pieces", "mandelbrot", _redefine(MPI_JITTERED_PIECES),
           (f"{_MANDEL_BALANCE}[mpi-balanced]",), "the load was not balanced",
           select="mandelbrot and mpi and balanced"),
    # correct alternatives: every test of their backend passes
    Broken("mpi_balanced_cyclic", "mandelbrot", _redefine(MPI_CYCLIC), (), "",
           select="mandelbrot and mpi and balanced"),
    Broken("mpi_balanced_computing_master", "mandelbrot", _redefine(MPI_COMPUTING_MASTER), (),
           "", select="mandelbrot and mpi and balanced"),
    # static blocks with a barrier before the last rows: finish times line up; waiting shows
    # where each worker has a CPU, the blocks' uneven work everywhere
    *(Broken(f"{b}_balanced_barrier", "mandelbrot", _redefine(code),
             (f"{_MANDEL_BALANCE}[{b}-balanced]",), "the load was not balanced",
             select=f"mandelbrot and {b} and balanced",
             detail=f"work over time: {KIT}/grader-results/pictures/balance-{b}-balanced.png",
             may_fail=(f"test_mandelbrot_trace[{b}-balanced]",) if b == "mpi" else ())
      for b, code in (("mpi", MPI_BARRIER), ("pool", POOL_BARRIER), ("ipp", IPP_BARRIER))),
    # the oracle's image, workers computing a 1x1 spec: their records do not count
    *(Broken(f"{b}_balanced_oracle_image", "mandelbrot", _redefine(code),
             (f"test_mandelbrot_trace[{b}-balanced]", f"{_MANDEL_BALANCE}[{b}-balanced]"),
             "compute_rows ran on another spec than the graded one",
             select=f"mandelbrot and {b} and balanced")
      for b, code in (("mpi", MPI_ORACLE), ("pool", POOL_ORACLE), ("ipp", IPP_ORACLE))),
    # trace files written by the submission: a made-up pid, or real workers' pids while the
    # calling process did the work (the operating system's CPU times say so)
    *(Broken(f"{b}_balanced_forged_trace", "mandelbrot", _redefine(code),
             (f"test_mandelbrot_trace[{b}-balanced]", f"{_MANDEL_BALANCE}[{b}-balanced]"),
             "not workers of this run", select=f"mandelbrot and {b} and balanced")
      for b, code in (("mpi", MPI_FORGED_TRACE), ("pool", POOL_FORGED_TRACE),
                      ("ipp", IPP_FORGED_TRACE))),
    # real processes of the cluster named as workers: only its engines are (on a Slurm
    # allocation the step's srun names the engine in its command line too)
    Broken("ipp_balanced_claims_cluster_processes", "mandelbrot",
           _redefine(IPP_CLAIMS_CLUSTER_PROCESSES),
           ("test_mandelbrot_trace[ipp-balanced]", f"{_MANDEL_BALANCE}[ipp-balanced]"),
           "not workers of this run", select="mandelbrot and ipp and balanced"),
    Broken("pool_balanced_claims_real_workers", "mandelbrot", _redefine(POOL_CLIENT_WORKS),
           ("test_mandelbrot_trace[pool-balanced]", f"{_MANDEL_BALANCE}[pool-balanced]"),
           "did not run in the workers", select="mandelbrot and pool and balanced"),
    Broken("pool_balanced_side_process", "mandelbrot", _redefine(POOL_SIDE_PROCESS),
           ("test_mandelbrot_trace[pool-balanced]", f"{_MANDEL_BALANCE}[pool-balanced]"),
           "did not run in the workers", select="mandelbrot and pool and balanced"),
    *(Broken(name, "mandelbrot", _redefine(code),
             (f"test_mandelbrot_trace[{b}-balanced]", f"{_MANDEL_BALANCE}[{b}-balanced]"),
             # the CPU rule's sum of CPU beyond the claims, or, where heavy load lets rank 0
             # wait long enough to hide it in its allowance, its agreement per worker
             ("did not run in the workers", "records written or rewritten for other workers"),
             select=f"mandelbrot and {b} and balanced", workers=4)
      for name, b, code in (("mpi_balanced_rank0_works", "mpi", MPI_RANK0_WORKS),
                            ("mpi_balanced_rank0_works_others_burn", "mpi",
                             MPI_RANK0_WORKS_OTHERS_BURN),
                            ("pool_balanced_caller_works_workers_burn", "pool",
                             POOL_CALLER_WORKS_WORKERS_BURN))),
    *(Broken(name, "mandelbrot", _redefine(code), ("test_mandelbrot_pixel_times",), words,
             select="mandelbrot and pixel_times")
      for name, code, words in (
          ("pixel_times_affine", PIXEL_TIMES_AFFINE,
           "a function of the iteration counts, not measurements"),
          ("pixel_times_at_import", PIXEL_TIMES_AT_IMPORT, "the times were not measured"))),
    # (at --workers 2 the trace test sees row blocks only at P=2, even by symmetry: it passes;
    # the balance test runs at P=4 whatever --workers says)
    *(Broken(f"{b}_balanced_blocks_claimed_cyclic", "mandelbrot", _redefine(code),
             (f"{_MANDEL_BALANCE}[{b}-balanced]",), "CPU time",
             select=f"mandelbrot and {b} and balanced")
      for b, code in (("mpi", MPI_BLOCKS_CLAIMED_CYCLIC), ("pool", POOL_BLOCKS_CLAIMED_CYCLIC))),
    # fails closed: whether the grader saw the workers before the pool ended (then their CPU
    # time falls short of their claims) or not (then the records name no worker it knows)
    Broken("pool_balanced_ends_pool_early", "mandelbrot", _redefine(POOL_ENDED_EARLY),
           ("test_mandelbrot_trace[pool-balanced]", f"{_MANDEL_BALANCE}[pool-balanced]"),
           "worker", select="mandelbrot and pool and balanced"),
    # correct and common: the pool closed and joined before returning (its workers end
    # before the grader's last look; their CPU time must still count)
    Broken("pool_balanced_closes_and_joins", "mandelbrot", {"mandelbrot": [(
        _MANDEL_END, "    image = np.vstack(pool.starmap(compute_rows, tasks, chunksize=1))\n"
                     "    pool.close()\n    pool.join()\n    return image\n")]},
        (), "", select="mandelbrot and pool and balanced"),
    # correct rows, but in a pool of its own: the message names that cause
    Broken("pool_balanced_own_pool", "mandelbrot", _redefine(POOL_OWN_POOL),
           ("test_mandelbrot_trace[pool-balanced]", f"{_MANDEL_BALANCE}[pool-balanced]"),
           "processes you started yourself", select="mandelbrot and pool and balanced"),
]

# The same forgeries in the other exercises: records by hand for made-up pids, or for real
# pool workers while the calling process does the work.
_WORDCOUNT_END = ("    for partial in pool.imap_unordered(count_batch, batches):\n"
                  "        total.update(partial)\n    return total\n")
WORDCOUNT_FORGED = '''

def wordcount_pool(paths, pool, pids=None):
    """Counts everything in the calling process, untraced, and writes count_file records
    bound to each document's content, for made-up pids (or ``pids``)."""
    import json, os
    from problems import trace
    from problems.wordcount import count_text

    total = Counter()
    with open(os.path.join(trace.directory(), "trace-999999.jsonl"), "w") as f:
        for i, path in enumerate(paths):
            with open(path, "rb") as doc:
                data = doc.read()
            total.update(count_text(data.decode("utf-8")))
            pid = pids[i % len(pids)] if pids else 999999 + i % 4
            f.write(json.dumps({"kernel": "wordcount.count_file", "task": str(path),
                                "units": float(len(data)), "pid": pid, "host": os.uname()[1],
                                "start": 0.0, "end": 0.01, "cpu": 0.01,
                                "binding": {"content": trace.digest(data)}}) + "\\n")
    return total
'''
WORDCOUNT_CLAIMS_REAL = WORDCOUNT_FORGED.replace("def wordcount_pool(", "def _forged(") + '''

def wordcount_pool(paths, pool):
    return _forged(paths, pool, sorted(set(pool.map(_getpid, range(64), chunksize=1))))


def _getpid(_):
    import os

    return os.getpid()
'''
MATMUL_FORGED = '''

def matmul_pool(A, B, pool):
    """The product in the calling process, untraced; multiply records for made-up pids."""
    import json, os
    from problems import trace
    from problems.matmul import matrix_digest, row_digests

    b_digest = matrix_digest(B)
    with open(os.path.join(trace.directory(), "trace-999999.jsonl"), "w") as f:
        for i in range(A.shape[0]):
            f.write(json.dumps({"kernel": "matmul.multiply", "task": [1, A.shape[1]],
                                "units": float(B.size), "pid": 999999 + i % 4,
                                "host": os.uname()[1], "start": 0.0, "end": 0.01, "cpu": 0.01,
                                "binding": {"B": b_digest,
                                            "rows": row_digests(A[i:i + 1])}}) + "\\n")
    return np.dot(A, B)
'''
MATMUL_CALLER_WORKS = '''

def _worker_pid(_):
    import time

    time.sleep(0.02)  # every worker gets a task, however busy the machine
    return os.getpid()


def matmul_pool(A, B, pool):
    """The product in the calling process, untraced; multiply records bound to A and B for
    the real pool workers, rows dealt out in blocks."""
    import json
    from problems import trace
    from problems.matmul import matrix_digest, row_digests

    pids = sorted(set(pool.map(_worker_pid, range(24), chunksize=1)))
    blocks = np.array_split(np.arange(A.shape[0]), len(pids))
    with open(os.path.join(trace.directory(), "trace-made.jsonl"), "w") as f:
        for pid, rows in zip(pids, blocks):
            f.write(json.dumps({"kernel": "matmul.multiply", "task": [len(rows), A.shape[1]],
                                "units": float(len(rows) * B.size), "pid": pid,
                                "host": os.uname()[1], "start": 0.0, "end": 0.01, "cpu": 0.01,
                                "binding": {"B": matrix_digest(B),
                                            "rows": row_digests(A[rows])}}) + "\\n")
    return np.dot(A, B)
'''
FORGERIES: list[Broken] = [
    Broken("wordcount_pool_forged_trace", "wordcount",
           {"wordcount": [(_WORDCOUNT_END, _WORDCOUNT_END + WORDCOUNT_FORGED)]},
           ("test_wordcount[pool-", "test_wordcount_parallel[pool]"), "not workers of this run",
           select="wordcount and pool"),
    Broken("wordcount_pool_claims_real_workers", "wordcount",
           {"wordcount": [(_WORDCOUNT_END, _WORDCOUNT_END + WORDCOUNT_CLAIMS_REAL)]},
           ("test_wordcount_parallel[pool]",), "did not run in the workers",
           select="wordcount and pool"),
    Broken("matmul_pool_forged_trace", "matmul",
           {"matmul": [(_POOL_RETURN, _POOL_RETURN + MATMUL_FORGED)]},
           ("test_matmul_parallel[pool]",), "not workers of this run", select="matmul and pool"),
    Broken("matmul_pool_caller_works", "matmul",
           {"matmul": [(_POOL_RETURN, _POOL_RETURN + MATMUL_CALLER_WORKS)]},
           ("test_matmul_parallel[pool]",), "more work than they had CPU time for",
           select="matmul and pool"),
    # correct, unusual: the documents' paths spelled differently (dir/./doc)
    Broken("wordcount_paths_respelled", "wordcount", {"wordcount": [(
        "    paths = list(paths)\n    workers = pool_size(pool)\n",
        "    paths = [os.path.join(os.path.dirname(p), '.', os.path.basename(p)) for p in paths]\n"
        "    workers = pool_size(pool)\n")]},
        (), "", select="wordcount and pool and not missing"),
]


# -- diagnoses: a wrong result is traced to its cause (parakit.controller.verdicts.mismatch*) --
_MPI_GATHER = ("    image = np.empty((spec.h, spec.w), dtype=mine.dtype) if rank == 0 else None\n"
               "    comm.Gatherv(mine, [image, counts, MPI.INT] if rank == 0 else None, root=0)\n")
_POOL_CHUNKED_END = ("    return np.vstack(pool.starmap(compute_rows, [(spec, b) for b in blocks], "
                     "chunksize=1))\n")
_FLOAT32_VIEWPORT = ("    spec = __import__('dataclasses').replace(spec, **{k: float(np.float32("
                     "getattr(spec, k))) for k in ('x1', 'x2', 'y1', 'y2')})  # sent as float32\n")
_MASTER_ALONE_DOES_NOTHING = '''
def mandelbrot_mpi_balanced(spec, comm):
    if comm.Get_size() == 1:  # nobody to hand work to: the image stays as it was made
        return np.zeros((spec.h, spec.w), dtype=np.intc)
    if comm.Get_rank() == 0:
        return _master(spec, comm, computes=False)
    _worker(spec, comm)
    return None
'''
_COUNT_BATCH = "        total.update(count_file(path))\n"
_POOL_PATHS = "    paths = list(paths)\n    workers = pool_size(pool)\n"
_NOT_MISSING = "wordcount and pool and not missing"
DIAGNOSES: list[Broken] = [
    # images and products
    Broken("mandelbrot_pool_float32_viewport", "mandelbrot",
           {"mandelbrot": [(_POOL_CHUNKED, _FLOAT32_VIEWPORT + _POOL_CHUNKED)]},
           ("test_mandelbrot[pool-chunked]",), "3 pixels in 3 rows differ slightly from the "
           "serial image", select="mandelbrot and pool and chunked and not trace"),
    Broken("mandelbrot_pool_blocks_reversed", "mandelbrot",
           {"mandelbrot": [(_POOL_CHUNKED_END, _POOL_CHUNKED_END.replace("))\n", ")[::-1])\n"))]},
           ("test_mandelbrot[pool-chunked]",), "the blocks are in the wrong order",
           select="mandelbrot and pool and chunked"),
    Broken("mandelbrot_mpi_rows_numbered_from_one", "mandelbrot", {"mandelbrot": [
        ("                image[rows] = buf\n",
         "                image[[r - 1 for r in rows]] = buf  # rows numbered from 1\n"),
        ("            image[rows] = compute_rows(spec, rows)\n",
         "            image[[r - 1 for r in rows]] = compute_rows(spec, rows)\n")]},
           ("test_mandelbrot[mpi-balanced]",), "rows are shifted: row 0 holds row 1's values",
           select="mandelbrot and mpi and balanced and not trace and not test_mandelbrot_balance"),
    Broken("mandelbrot_mpi_cyclic_stacked", "mandelbrot",  # cyclic rows stacked rank by rank
           _redefine(MPI_CYCLIC.replace("    image = np.empty((spec.h, spec.w), dtype=mine.dtype)\n"
                                        "    for r, part in enumerate(parts):\n"
                                        "        image[r::size] = part\n",
                                        "    image = np.vstack(parts)\n")),
           ("test_mandelbrot[mpi-balanced]",), "rows are at the wrong index: row 1 holds row 2's",
           select="mandelbrot and mpi and balanced and not trace and not test_mandelbrot_balance"),
    Broken("mandelbrot_mpi_chunked_not_gathered", "mandelbrot", {"mandelbrot": [
        (_MPI_GATHER, "    image = np.zeros((spec.h, spec.w), dtype=mine.dtype)\n"
                      "    image[blocks[rank]] = mine  # every rank fills in its own rows\n")]},
           ("test_mandelbrot[mpi-chunked]",), "the block of worker 1 of 2",
           select="mandelbrot and mpi and chunked"),
    Broken("mandelbrot_mpi_master_alone_computes_nothing", "mandelbrot",
           _redefine(_MASTER_ALONE_DOES_NOTHING), ("test_mandelbrot[mpi-balanced]",),
           "with 1 process", select="test_mandelbrot and mpi and balanced and not trace "
           "and not test_mandelbrot_balance"),
    # Zero rows that were written: a worker multiplied by a B it never received. The message
    # must not say the rows never reached rank 0: it says where they are and asks both.
    Broken("matmul_mpi_b_not_broadcast", "matmul", {"matmul": [
        ("        B = np.empty((k, n), dtype=np.float64)\n",
         "        B = np.zeros((k, n), dtype=np.float64)\n"),
        ("    comm.Bcast(B, root=0)\n", "")]},
           ("square", "rectangular", "indivisible", "fewer-rows", "parallel", "outer-product",
            "single-column"), "the block of worker 1 of 2", select="matmul and mpi"),
    Broken("matmul_pool_float32_rows", "matmul", {"matmul": [
        ("    C[start:stop] = multiply(A[start:stop], B)\n",
         "    C[start:stop] = multiply(A[start:stop].astype(np.float32), B)  # half the bytes\n")]},
           ("square", "rectangular", "indivisible", "fewer-rows", "outer-product",
            "single-column"), "differ slightly", select="matmul and pool and not parallel"),
    # Hangs only on a shape the students never saw (the hidden outer product, 29 rows): that
    # test fails; every other shape keeps its points at every process count (a hang costs
    # only itself: the cases after it run in a new child).
    Broken("matmul_pool_hangs_on_hidden_shape", "matmul",
           {"matmul": _at_pool_start("A.shape[0] == 29 and __import__('time').sleep(600)")},
           ("test_matmul_hidden[pool-outer-product]",), "did not finish within", slow=True,
           select="matmul and pool"),
    Broken("matmul_pool_transposed", "matmul", {"matmul": [
        (_POOL_RETURN, _POOL_RETURN.replace(")))\n", "))).T  # column-major habit\n"))]},
           ("square", "rectangular", "indivisible", "fewer-rows", "parallel", "outer-product",
            "single-column"), "transpose", select="matmul and pool"),
    Broken("mandelbrot_ipp_returns_async_result", "mandelbrot", {"mandelbrot": [
        ("    results = view.map_sync(compute_rows, [spec] * len(batches), batches)\n"
         "    return np.vstack(results)  # map returns the results in the order of the batches\n",
         "    return view.map_async(compute_rows, [spec] * len(batches), batches)\n")]},
           EVERY, "a result still to be collected: call its .get()",
           select="mandelbrot and ipp and balanced"),
    # word counts
    Broken("wordcount_pool_skips_last_document", "wordcount", {"wordcount": [
        (_POOL_PATHS, _POOL_PATHS.replace("list(paths)\n", "list(paths)[:-1]  # off by one\n"))]},
           EVERY, "not counted", select=_NOT_MISSING),  # the empty one: by the trace
    Broken("wordcount_mpi_blocks_drop_remainder", "wordcount", {"wordcount": [
        ("    batches = _batches(list(paths), comm.Get_size()) if comm.Get_rank() == 0 else None\n",
         "    k = len(paths) // comm.Get_size() if comm.Get_rank() == 0 else 0  # per rank\n"
         "    batches = ([list(paths)[r * k:(r + 1) * k] for r in range(comm.Get_size())]\n"
         "               if comm.Get_rank() == 0 else None)\n")]},
           ("mpi-one-document", "mpi-unicode"), "the remainder of",
           select="test_wordcount and mpi and not missing and not parallel"),
    Broken("wordcount_pool_counts_first_twice", "wordcount", {"wordcount": [
        (_POOL_PATHS, _POOL_PATHS.replace("list(paths)\n", "list(paths) + list(paths)[:1]\n"))]},
           EVERY, "was counted twice", select=_NOT_MISSING),
    Broken("wordcount_pool_splits_on_spaces", "wordcount", {"wordcount": [
        (_COUNT_BATCH, "        total.update(open(path, encoding='utf-8').read().casefold()"
                       ".split())\n")]},
           ("test_wordcount[pool-", "test_wordcount_parallel[pool]"), "cut differently",
           select="wordcount and pool"),
    Broken("wordcount_pool_keeps_case", "wordcount", {"wordcount": [
        (_COUNT_BATCH, "        total.update(__import__('problems.wordcount').wordcount.WORD"
                       ".findall(open(path, encoding='utf-8').read()))\n")]},
           ("test_wordcount[pool-", "test_wordcount_parallel[pool]"), "not case-folded",
           select=_NOT_MISSING),
    Broken("wordcount_mpi_every_rank_counts_everything", "wordcount", {"wordcount": [
        ("    mine = comm.scatter(batches, root=0)\n",
         "    mine = comm.bcast(list(paths) if comm.Get_rank() == 0 else None, root=0)\n")]},
           EVERY, "every count is exactly 2 times", select="wordcount and mpi and not missing"),
    # greetings
    Broken("hello_greets_for_every_rank", "hello", {"hello": [
        ("    print(greeting(MPI.COMM_WORLD), flush=True)\n",
         "    for _ in range(MPI.COMM_WORLD.Get_size()):\n"
         "        print(greeting(MPI.COMM_WORLD), flush=True)\n")]},
           ("test_hello_program[P2]",), "every rank greeted 2 times", select="test_hello_program"),
]


def everything() -> list[Broken]:
    """Every entry of every part of the catalogue."""
    return CATALOGUE + ROBUSTNESS + TRUST + MANDELBROT + FORGERIES + DIAGNOSES
