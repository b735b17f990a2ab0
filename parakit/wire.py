"""What crosses the boundary between the grader and a graded child: data, never code.

The grading process must never deserialise anything the graded code controls into code (a
pickle can run arbitrary code when it is loaded). So results travel as data only:

- the child writes ``result-{case}-{rank}.json`` (status, message, the encoded value) and, for
  an array, ``value-{case}-{rank}.npy`` (read back with ``allow_pickle=False``);
- :func:`encode` turns what a correct solution may return into plain types in the child
  (numpy arrays and scalars, ``dict`` / ``Counter`` and their subclasses, lists or tuples of
  arrays or numbers, str, None) and refuses anything else with "returned an unsupported type";
- :func:`decode` rebuilds plain values in the grader (dict, numpy array, str, int, float)
  and raises :class:`WireError` with a readable reason for anything malformed.

Array arguments go the other way as ``arg-{case}-{index}.npy`` files that the child maps in
shared mode: the caller's data lives in a file the grader reads itself after the call, so a
change in place is seen from outside the graded process (see :func:`load_argument`).

Imports only the standard library and numpy: the child imports it too.
"""

from __future__ import annotations

import hashlib
import io
import json
import numbers
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

MAX_RESULT_BYTES = 512 << 20  # a result larger than this is refused unread
MAX_SIDE_RESULT_BYTES = 4 << 20  # the same, from an MPI rank but 0 (whose value is not graded)
ARRAY_ARG = "__parakit_array_argument__"  # marker of an argument passed as a file


class WireError(ValueError):
    """A result that cannot be read back as data; the message says why in a student's words."""


class Unsupported(TypeError):
    """A returned value that has no data form (the child reports it as the call's failure)."""


# -- results: child -> grader -------------------------------------------------------------------

def encode(value: Any, array_path: Path) -> dict:
    """The JSON-able form of a returned value; an array is saved to ``array_path``."""
    if value is None:
        return {"kind": "none"}
    if isinstance(value, str):
        return {"kind": "str", "value": str(value)}
    if isinstance(value, (bool, np.bool_)):
        return {"kind": "number", "value": bool(value)}
    if isinstance(value, (numbers.Integral, np.integer)):
        return {"kind": "number", "value": int(value)}
    if isinstance(value, (numbers.Real, np.floating)):
        return {"kind": "number", "value": float(value)}
    if isinstance(value, Mapping):
        return {"kind": "mapping", "items": [[_key(k), _count(v)] for k, v in value.items()]}
    if isinstance(value, (np.ndarray, list, tuple)):
        return _encode_array(value, array_path)
    if callable(getattr(value, "get", None)) and callable(getattr(value, "ready", None)):
        raise Unsupported(f"returned {_typename(value)}, a result still to be collected: call its "
                          ".get() (or use map_sync / apply_sync, or Pool.map) and return the data")
    raise Unsupported(f"returned an unsupported type {_typename(value)}; return a numpy array, "
                      "a dict / Counter, a number, a str or None")


def _encode_array(value: Any, path: Path) -> dict:
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as exc:  # ragged lists
        raise Unsupported(f"returned a {_typename(value)} that is not one array ({exc}); stack "
                          "blocks of rows into one with np.vstack") from None
    if array.dtype.kind not in "biufc":
        raise Unsupported(f"returned a {_typename(value)} of {array.dtype} elements; expected "
                          "numbers (an array of int or float)")
    np.save(path, np.ascontiguousarray(array), allow_pickle=False)
    return {"kind": "array", "file": path.name, "type": _typename(value)}


def _key(key: Any) -> str | int | float:
    if isinstance(key, str):
        return str(key)
    if isinstance(key, (numbers.Integral, np.integer)) and not isinstance(key, bool):
        return int(key)
    if isinstance(key, (numbers.Real, np.floating)):
        return float(key)
    raise Unsupported(f"returned a mapping with a key of type {_typename(key)}; keys must be "
                      "str (words) or numbers")


def _count(value: Any) -> int | float:
    if isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, (numbers.Real, np.floating)):
        return float(value)
    raise Unsupported(f"returned a mapping with a value of type {_typename(value)}; values "
                      "must be numbers (counts)")


def _typename(value: Any) -> str:
    return type(value).__name__


def decode(data: Any, folder: Path) -> Any:
    """The value of an encoded result, as plain data; WireError if it is malformed."""
    if not isinstance(data, dict) or "kind" not in data:
        raise WireError("the result has no value record")
    kind = data["kind"]
    if kind == "none":
        return None
    if kind == "str" and isinstance(data.get("value"), str):
        return data["value"]
    if kind == "number" and isinstance(data.get("value"), (int, float)):
        return data["value"]
    if kind == "mapping" and isinstance(data.get("items"), list):
        out: dict = {}
        for item in data["items"]:
            if not (isinstance(item, list) and len(item) == 2
                    and isinstance(item[0], (str, int, float))
                    and isinstance(item[1], (int, float)) and not isinstance(item[1], bool)):
                raise WireError("a mapping entry is not a (key, number) pair")
            out[item[0]] = item[1]
        return out
    if kind == "array" and isinstance(data.get("file"), str):
        return read_array(folder / Path(data["file"]).name)
    raise WireError(f"unknown value record {str(kind)[:40]!r}")


def read_untrusted(path: Path, limit: int = MAX_RESULT_BYTES) -> bytes:
    """The bytes of a file that graded code could have written or replaced: never through a
    symbolic link (under ``--run-as`` a link to the hidden tests must not be read as a result),
    a regular file only, at most ``limit`` bytes. OSError or WireError otherwise."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise WireError(f"{path.name} is not a regular file")
        if info.st_size > limit:
            raise WireError(f"{path.name} is {info.st_size / 2**20:.0f} MiB, over the limit of "
                            f"{limit >> 20} MiB")
        return file.read(limit + 1)[:limit]


def read_array(path: Path) -> np.ndarray:
    """A ``.npy`` file as an array, without pickle and within the size limit."""
    try:
        array = np.load(io.BytesIO(read_untrusted(path)), allow_pickle=False)
    except WireError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise WireError(f"the returned array cannot be read ({type(exc).__name__}: {exc})") \
            from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "biufc":
        raise WireError("the returned array does not hold numbers")
    return array


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` atomically: a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def read_json(path: Path, limit: int = MAX_RESULT_BYTES) -> dict:
    """A result file's record; WireError if it is not a JSON object within ``limit`` bytes."""
    try:
        data = json.loads(read_untrusted(path, limit))
    except WireError:
        raise
    except (OSError, ValueError) as exc:
        raise WireError(f"the result file cannot be read ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise WireError("the result file does not hold a record")
    return data


# -- arguments: grader -> child -------------------------------------------------------------------

def argument_file(case: int, index: int) -> str:
    return f"arg-{case}-{index}.npy"


def store_arguments(args: tuple, case: int, folder: Path) -> list:
    """The case's arguments for the job file: each array saved to a file and replaced by a
    marker that :func:`load_argument` turns into an array over that file in the child."""
    out = []
    for index, arg in enumerate(args):
        if isinstance(arg, np.ndarray) and arg.dtype.kind in "biufc":
            name = argument_file(case, index)
            np.save(folder / name, arg, allow_pickle=False)
            out.append((ARRAY_ARG, name))
        else:
            out.append(arg)
    return out


def load_argument(arg: Any, folder: str | os.PathLike) -> Any:
    """In the child: a marked argument becomes a plain ndarray over its file, mapped shared,
    so that a write into it reaches the file the grader reads after the call."""
    if isinstance(arg, tuple) and len(arg) == 2 and arg[0] == ARRAY_ARG:
        return np.asarray(np.load(Path(folder, arg[1]), mmap_mode="r+"))
    return arg


def changed_arguments(args: tuple, case: int, folder: Path) -> list[int]:
    """Indices of the array arguments of a case whose file no longer holds what was sent."""
    changed = []
    for index, arg in enumerate(args):
        if not (isinstance(arg, np.ndarray) and arg.dtype.kind in "biufc"):
            continue
        try:  # the graded code could have replaced the file (by a pipe, a link, gigabytes)
            data = read_untrusted(folder / argument_file(case, index), arg.nbytes + (1 << 16))
            now = np.load(io.BytesIO(data), allow_pickle=False)
            same = now.shape == arg.shape and now.dtype == arg.dtype and np.array_equal(
                now, arg, equal_nan=arg.dtype.kind in "fc")
        except (OSError, ValueError, EOFError, WireError):
            same = False
        if not same:
            changed.append(index)
    return changed


def digest(value: Any) -> str:
    """A digest of a non-array argument (lists of paths, specs), the same in both processes."""
    return hashlib.sha256(repr(value).encode()).hexdigest()


def changed_inputs(case: dict, i: int, jobdir: Path, results: dict) -> str:
    """What the call changed in its inputs ('' if nothing): array arguments from the files
    the harness reads itself, the others from the digests the runner sends back."""
    args = tuple(case["args"])
    changed = changed_arguments(args, i, jobdir)
    ranks = results if case.get("everywhere") else {0: results.get(0, {})}
    for res in ranks.values():
        digests = res.get("arg_digests") or []
        changed += [j for j, (arg, got) in enumerate(zip(args, digests, strict=False))
                    if got is not None and got != digest(arg)]
    if not changed:
        return ""
    j = min(changed)
    return (f"modified its input argument {j + 1} ({type(args[j]).__name__}) in place; "
            "work on a copy, the caller's data must stay as it was")


def result_bytes(jobdir: Path, i: int) -> int:
    """Bytes of case ``i``'s result files (rank 0's value included: the others' are not read)."""
    total = 0
    for path in [*jobdir.glob(f"result-{i}-*.json"), jobdir / f"value-{i}-0.npy"]:
        try:
            total += path.lstat().st_size
        except OSError:
            continue
    return total


def checked_record(data: dict, rank: int, host: str) -> dict:
    """A result record with the fields the harness relies on, of the right types (``host``:
    the writer's, where it names none)."""
    status = data.get("status")
    if not isinstance(status, str):
        raise WireError("the result has no status")
    record = {"status": status, "rank": rank,
              "message": str(data.get("message", ""))[:20000],
              "traceback": str(data.get("traceback", ""))[:20000],
              "unsupported": bool(data.get("unsupported", False)),
              "value": data.get("value"),
              "pid": data.get("pid") if isinstance(data.get("pid"), int) else -1,
              "host": data.get("host") if isinstance(data.get("host"), str) else host}
    digests = data.get("arg_digests")
    record["arg_digests"] = [d if isinstance(d, str) else None for d in digests] \
        if isinstance(digests, list) else []
    return record
