"""How the contract touches the disk: artifact paths that stay inside their
manifest's folder, and files read as regular files with one-line errors.

Every reader of a manifest's artifacts (``lepton manifest verify``, ``lepton
serve``, ``lepton export triton``, ``lepton pipeline predict``, the infra app
and the ``ModelArtifacts`` constructs) resolves a path with
:func:`resolve_artifact_path`, so the rules live in one place:

- a path is relative and ``/``-separated: no leading ``/``, no drive letter,
  no backslash, no NUL, no empty, ``.`` or ``..`` segment;
- its real path (symlinks followed) lies strictly inside the real path of the
  manifest's folder, so a symlink cannot lead out of it.

Files are opened with :func:`open_regular_file`: anything but a regular file
(a folder, a FIFO that would block forever, a device that never ends) is
refused, and every ``OSError`` becomes a :class:`ContractError` naming the
file and the fix. Standard library only.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import IO, Any

from .checksums import Digest, StreamingDigest
from .errors import ContractError

# Far above any real manifest, data plan or outputs file, far below what would exhaust memory.
MAX_DOCUMENT_BYTES = 64 * 2**20
_CHUNK = 2**20
_DRIVE = re.compile(r"^[A-Za-z]:")
_STAY_INSIDE = "artifact paths are '/'-separated and relative to the manifest's folder; re-run the pipeline that wrote the manifest"


def artifact_path_problem(path: object) -> str | None:
    """What makes ``path`` unusable as a manifest artifact path, or None when it is a plain relative path.

    Purely lexical (no disk access), so a document can be refused before anything is read.
    """
    if not isinstance(path, str) or not path:
        return "is empty"
    if "\x00" in path:
        return "contains a NUL byte"
    if "\\" in path:
        return "contains a backslash"
    if path.startswith("/"):
        return "is absolute"
    if _DRIVE.match(path):
        return "starts with a drive letter"
    if any(segment in ("", ".", "..") for segment in path.split("/")):
        return "has an empty, '.' or '..' segment"
    return None


def resolve_artifact_path(base_dir: str | os.PathLike[str], path: str, *, name: str | None = None) -> Path:
    """The real path of artifact ``path`` under ``base_dir``; :class:`ContractError` when it would leave the folder.

    ``name`` (the artifact's name) only words the message. The result has every
    symlink resolved, so opening it cannot be redirected by a link that was
    checked here (a link swapped in later is caught by the checksum).
    """
    what = f"manifest artifact {name!r} has path {path!r}, which" if name else f"artifact path {path!r}"
    problem = artifact_path_problem(path)
    if problem is not None:
        raise ContractError(f"{what} {problem}; {_STAY_INSIDE}")
    root = Path(os.path.realpath(base_dir))
    target = Path(os.path.realpath(root / path))
    if root not in target.parents:
        raise ContractError(f"{what} resolves to {target}, outside the manifest's folder {root} (a symlink leads out); "
                            f"put the file itself inside the folder or re-run the pipeline that wrote the manifest")
    return target


def _first_file_above(path: Path) -> Path | None:
    """The nearest ancestor of ``path`` that exists and is not a folder (why open() said ENOTDIR)."""
    for parent in reversed(path.parents):
        try:
            if not stat.S_ISDIR(os.stat(parent).st_mode):
                return parent
        except OSError:
            return None
    return None


def open_regular_file(path: str | os.PathLike[str], *, what: str, fix: str, missing: str | None = None) -> IO[bytes]:
    """``path`` opened for binary reading, refusing anything but a readable regular file.

    ``what`` names the file in messages ("manifest", "artifact 'model'"),
    ``fix`` says what to do, ``missing`` replaces the whole message when the
    file does not exist. Every failure is one :class:`ContractError` line.
    """
    path = Path(path)
    try:
        # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ContractError(missing or f"{what} {path} does not exist; {fix}") from None
    except NotADirectoryError:
        above = _first_file_above(path)
        where = f"{above} is a file, not a folder" if above else "a part of it is not a folder"
        raise ContractError(f"{what} path {path} cannot exist: {where}; {fix}") from None
    except PermissionError:
        raise ContractError(f"cannot read {what} {path}: permission denied; give this user read access to it "
                            "(and its folders) or run as a user who has it") from None
    except OSError as exc:  # a symlink loop, a name too long, an I/O error
        raise ContractError(f"cannot read {what} {path}: {exc.strerror or exc}; {fix}") from None
    except ValueError:  # os.open refuses a path with a NUL byte before asking the OS
        raise ContractError(f"{what} path {str(path)!r} contains a NUL byte; {fix}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise ContractError(f"{what} {path} is a folder, not a file; {fix}")
        if not stat.S_ISREG(mode):
            raise ContractError(f"{what} {path} is not a regular file (a FIFO, socket or device); {fix}")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_file_bytes(path: str | os.PathLike[str], *, what: str, fix: str, missing: str | None = None,
                    limit: int = MAX_DOCUMENT_BYTES) -> bytes:
    """The bytes of the regular file ``path`` (see :func:`open_regular_file`), refusing one over ``limit`` bytes."""
    with open_regular_file(path, what=what, fix=fix, missing=missing) as fh:
        try:
            data = fh.read(limit + 1)
        except OSError as exc:
            raise ContractError(f"cannot read {what} {path}: {exc.strerror or exc}; {fix}") from None
    if len(data) > limit:
        raise ContractError(f"{what} {path} is over {limit // 2**20} MiB, far more than such a file holds; {fix}")
    return data


def digest_regular_file(path: str | os.PathLike[str], *, what: str, fix: str, missing: str | None = None) -> Digest:
    """Checksums of the regular file ``path`` (see :func:`open_regular_file`), streamed in 1 MiB chunks."""
    digest = StreamingDigest()
    with open_regular_file(path, what=what, fix=fix, missing=missing) as fh:
        try:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
        except OSError as exc:
            raise ContractError(f"cannot read {what} {path}: {exc.strerror or exc}; {fix}") from None
    return digest.result()


def parse_json_document(data: bytes, *, what: str, fix: str) -> Any:
    """``data`` parsed as UTF-8 JSON; every way it can fail is one :class:`ContractError` line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ContractError(f"{what} is not UTF-8 text (byte {exc.start} cannot be decoded); {fix}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ContractError(f"{what} is not valid JSON ({exc.msg} at line {exc.lineno}); {fix}") from None
    except RecursionError:
        raise ContractError(f"{what} nests JSON arrays or objects too deeply to read; {fix}") from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        reason = str(exc).split(";")[0].strip()  # drop Python's advice to call sys.set_int_max_str_digits()
        raise ContractError(f"{what} holds a value that cannot be read ({reason}); {fix}") from None


def read_json_document(path: str | os.PathLike[str], *, what: str, fix: str, missing: str | None = None) -> Any:
    """The JSON document in the regular file ``path``: :func:`read_file_bytes` then :func:`parse_json_document`."""
    data = read_file_bytes(path, what=what, fix=fix, missing=missing)
    return parse_json_document(data, what=f"{what} {path}", fix=fix)
