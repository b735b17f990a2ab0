"""The pictures a failure names (a mismatch's expected, returned and difference; an unbalanced
run's timeline), shown where a student reads the grade: embedded in Gradescope's html output.
Only plain PNG files of the grader's own pictures folder are read: graded code runs as the same
user and could leave a link there to a file it must not show."""

from __future__ import annotations

import base64
import html
import os
import re
import stat
from pathlib import Path

# Pictures embedded in Gradescope's results (base64 PNG in a test's html output), in all: a
# results.json stays well within what Gradescope takes; pictures beyond are named, not shown.
PICTURE_BYTES = 1_500_000
PICTURE = re.compile(r"(/[^\s:]+/([\w.\-]+\.png))")  # a picture's path in a failure message


def picture_bytes(path: str, folder: Path | None) -> bytes | None:
    """The PNG at ``path`` if it is a plain file in the grader's pictures ``folder`` (graded
    code runs as the same user and could leave a link there, to a file it must not show)."""
    if folder is None or Path(path).parent != Path(folder):
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return None
        data = f.read(PICTURE_BYTES + 1)
    return data if data.startswith(b"\x89PNG") and len(data) <= PICTURE_BYTES else None


def with_pictures(message: str, folder: Path | None, budget: list[int]) -> str | None:
    """``message`` as html with the pictures it names shown in it (while ``budget[0]`` bytes
    last), or None when it names none that can be shown."""
    shown, parts = 0, []
    for path, name in dict.fromkeys(PICTURE.findall(message)):
        data = picture_bytes(path, folder)
        if data is None or len(data) * 4 // 3 > budget[0]:
            parts.append(f"<p>{html.escape(name)}: not shown here (too large, or missing)</p>")
            continue
        budget[0] -= len(data) * 4 // 3
        shown += 1
        parts.append(f"<p>{html.escape(name)}:</p><img alt=\"{html.escape(name)}\" "
                     f"src=\"data:image/png;base64,{base64.b64encode(data).decode()}\">")
    if not shown:
        return None
    text = PICTURE.sub(lambda m: f"{m.group(2)} (below)", message)
    return f"<pre>{html.escape(text)}</pre>" + "".join(parts)
