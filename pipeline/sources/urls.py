"""Locations: a local path or an fsspec URL (`s3://`, `gs://`, `hf://`, `file://`, ...).

One place decides which filesystem a location is on, and turns a missing optional
package into one line naming the extra to install. Credentials come from each store's
usual environment variables and files; a URL that carries them is refused, so they are
never printed nor written into a manifest."""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
from pathlib import Path

import fsspec
from fsspec.core import split_protocol

from ..errors import OptionError, PipelineError

# The pip extra that brings each scheme's filesystem (pip install "simlidar[s3]").
SCHEME_EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs"}
LOCAL_SCHEMES = (None, "file", "local")
SCRATCH = "simlidar-staging"
_USERINFO = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@]*:[^/@]*@", re.IGNORECASE)
# What the stores' client libraries (botocore, google-auth) raise when this machine has no
# usable credentials for them: known by name, as those libraries are optional.
CREDENTIAL_ERRORS = (
    "NoCredentialsError",
    "PartialCredentialsError",
    "CredentialRetrievalError",
    "DefaultCredentialsError",
    "RefreshError",
)


def is_url(location: str) -> bool:
    """True for a URL on another filesystem than this machine's (file:// is local)."""
    return split_protocol(str(location))[0] not in LOCAL_SCHEMES


def local_path(location: str) -> str:
    """A local location without its file:// prefix."""
    return split_protocol(str(location))[1] if str(location).startswith(("file://", "local://")) else str(location)


def absolute_location(location: str) -> str:
    """A local location made absolute and normal (`dir/`, `./dir` and `dir` are one), so that
    what a run records does not depend on the working folder or on how the path was typed;
    a URL is kept as it is."""
    if is_url(location):
        return location
    return os.path.normpath(os.path.join(os.path.abspath(os.curdir), local_path(location)))


def join(root: str, relpath: str) -> str:
    """`relpath` (POSIX) under `root`, for paths and URLs alike."""
    return f"{root.rstrip('/')}/{relpath}" if root else relpath


def filesystem(location: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem `location` is on and its path there (no scheme)."""
    scheme = split_protocol(location)[0]
    if _USERINFO.match(location):
        raise OptionError(
            f"{scheme}:// locations must not carry credentials; use the store's usual environment variables "
            "or credential files instead"
        )
    try:
        return fsspec.core.url_to_fs(location)
    except ImportError as error:
        extra = SCHEME_EXTRAS.get(scheme)
        how = f'pip install "simlidar[{extra}]"' if extra else f"install the package it needs ({error})"
        raise PipelineError(f"{scheme}:// locations need an optional package: {how}") from None
    except ValueError as error:
        raise PipelineError(f"{scheme}:// is not a filesystem fsspec knows ({error})") from None


def access_problem(error: BaseException) -> str | None:
    """The one line for an error that says an object store could not be used with this
    machine's credentials (None for any other error)."""
    if type(error).__name__ in CREDENTIAL_ERRORS:
        return (
            f"no usable credentials for the object store ({error}): set them where its client looks (AWS_ACCESS_KEY_ID "
            "and AWS_SECRET_ACCESS_KEY, or ~/.aws/credentials, for s3://; GOOGLE_APPLICATION_CREDENTIALS for gs://), "
            "in the environment this command and `ray start` run in"
        )
    return None


def scratch_folder() -> Path:
    """This process's local scratch folder (host and pid in its name, under the system's
    temp folder); those of dead processes on this host, left by a kill, are removed."""
    root, host = Path(tempfile.gettempdir()) / SCRATCH, socket.gethostname()
    mine = root / f"{host}-{os.getpid()}"
    if not mine.is_dir():
        for other in root.glob(f"{host}-*"):
            if not _process_alive(int(other.name.rsplit("-", 1)[1])):
                shutil.rmtree(other, ignore_errors=True)
        mine.mkdir(parents=True, exist_ok=True)
    return mine


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
