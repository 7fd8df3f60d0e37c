"""The small text files a user names (sensor, mount, rig and calibration files, a maker's
metadata): read only when they are a regular file of bounded size, as UTF-8, with one line
saying what is wrong otherwise (a FIFO or a device is never opened: reading one hangs or
never ends)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

# A sensor file with 4000 beams is ~200 KiB; a maker's metadata a few MiB.
MAX_TEXT_FILE_BYTES = 16 * 2**20


def read_text_file(path: str | Path, what: str, error: type[Exception] = ValueError) -> str:
    """The text of the file `path` (`what` it is, for messages: "sensor file"), a UTF-8 BOM
    dropped; raises `error` with one line when it is missing, not a regular file, larger than
    MAX_TEXT_FILE_BYTES or not UTF-8."""
    path = Path(path)

    def refuse(why: str) -> Exception:
        return error(f"cannot read {what} {path}: {why}")

    try:
        status = os.stat(path)
    except FileNotFoundError:
        raise refuse("it does not exist") from None
    except OSError as problem:
        raise refuse(problem.strerror or str(problem)) from None
    if stat.S_ISDIR(status.st_mode):
        raise refuse("it is a folder; give the file itself")
    if not stat.S_ISREG(status.st_mode):
        raise refuse("it is not a regular file (a FIFO, socket or device); give a file")
    if status.st_size > MAX_TEXT_FILE_BYTES:
        raise refuse(f"{status.st_size / 2**20:.0f} MiB; such files are text of at most 16 MiB")
    try:
        return path.read_bytes()[: MAX_TEXT_FILE_BYTES + 1].decode("utf-8-sig")
    except OSError as problem:
        raise refuse(problem.strerror or str(problem)) from None
    except UnicodeDecodeError as problem:
        raise refuse(f"not UTF-8 text ({problem.reason} at byte {problem.start}); save it as UTF-8") from None
