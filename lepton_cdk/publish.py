"""Publish a run's outputs into a folder in one step: all of them, or none.

A run builds everything in a staging folder *inside* the output folder
(``OUT/.lepton.partial-XXXX``), so every move is a rename on the output's
own filesystem, even when ``OUT`` is a mount point whose parent is another
filesystem or read-only; nothing is ever written beside ``OUT``.
:meth:`StagedOutput.publish` then moves the previous run's entries aside
(into ``OUT/.lepton.previous-XXXX``, the commit file first) and the new ones
in (the commit file, ``manifest.json``, last), under a journal kept in the
staging folder. A failure undoes the moves; a run killed half-way is undone
by the next run into the same folder, which also removes what killed runs
left behind. A rename the filesystem refuses with EXDEV (an overlay or bind
mount inside ``OUT``) falls back to copying into a temporary name in the
destination folder, then renaming that within the folder.

Concurrent runs: the run holds an exclusive ``flock`` on ``OUT`` itself from
start to end, so a second run into the same folder is refused with one line,
and a run that holds the lock knows every marked leftover there is stale.
Leftovers are recognised by a marker file (``.lepton-run.json``) a run
writes into its staging folder, never by name alone: a user's folder that
merely looks like one is left alone. Standard library only.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import socket
import stat
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # not POSIX: no lock, and only leftovers whose process is gone are removed
    fcntl = None  # type: ignore[assignment]

from lepton_cdk.contract import write_json_atomic

MARKER = ".lepton-run.json"
_TOOL = "lepton-cdk"
_STAGING_PREFIX = ".lepton.partial-"
_ASIDE_PREFIX = ".lepton.previous-"
_COPY_PREFIX = ".lepton.copy-"
_TOKEN = r"[A-Za-z0-9_]{1,32}"  # what mkdtemp puts after the prefix
_STAGING_RE = re.compile(rf"^{re.escape(_STAGING_PREFIX)}({_TOKEN})$")

Note = Callable[[str], None]


class PublishError(OSError):
    """The output folder cannot be used or published into; one line names the folder and the fix."""


def _plain_name(name: Any) -> bool:
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\0" not in name


def _remove(path: Path) -> None:
    """Remove a file, link or folder (not following links); nothing if it is not there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _copy(src: Path, dst: Path) -> None:
    """Copy ``src`` (file, link or folder; links copied as links) to the new path ``dst``."""
    if src.is_dir() and not src.is_symlink():
        shutil.copytree(src, dst, symlinks=True)
    else:
        shutil.copy2(src, dst, follow_symlinks=False)


def _open_permissions(root: Path) -> None:
    """Give ``root`` and everything in it the permissions a plain mkdir/open would.

    mkdtemp and mkstemp (used for staging and atomic writes) create owner-only
    entries; published outputs should be readable like any folder the user makes.
    """
    umask = os.umask(0)
    os.umask(umask)
    if root.is_symlink():
        return  # chmod would follow it out of the run
    root.chmod((0o777 if root.is_dir() else 0o666) & ~umask)
    for folder, dirs, files in os.walk(root):  # does not follow links
        for name in dirs + files:
            path = Path(folder, name)
            if not path.is_symlink():
                path.chmod((0o777 if name in dirs else 0o666) & ~umask)


def _read_marker(folder: Path) -> dict[str, Any] | None:
    """The marker of a staging folder a lepton run made, or None when ``folder`` is not one."""
    if not _STAGING_RE.match(folder.name):
        return None
    try:
        if not stat.S_ISDIR(os.lstat(folder).st_mode) or not stat.S_ISREG(os.lstat(folder / MARKER).st_mode):
            return None
        doc = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("tool") != _TOOL or doc.get("token") != _STAGING_RE.match(folder.name).group(1):
        return None
    return doc


def _owner_gone(doc: dict[str, Any]) -> bool:
    """Whether the process that wrote a marker has ended (known only for this host)."""
    pid = doc.get("pid")
    if doc.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


class _Journal:
    """The staging folder's marker: who made it and, while publishing, which names move where."""

    def __init__(self, out_dir: Path, staging: Path, doc: dict[str, Any]) -> None:
        self.out_dir, self.staging, self.doc = out_dir, staging, doc

    @property
    def token(self) -> str:
        return str(self.doc["token"])

    @property
    def aside(self) -> Path:
        return self.out_dir / f"{_ASIDE_PREFIX}{self.token}"

    def save(self) -> None:
        write_json_atomic(self.doc, self.staging / MARKER)

    def plan_temp(self, folder: Path) -> Path:
        """A fresh name in ``folder`` for a cross-device copy, recorded before it exists so a killed run's is found."""
        temps: list[str] = self.doc.setdefault("temps", [])
        temp = folder / f"{_COPY_PREFIX}{self.token}-{len(temps)}"
        temps.append(temp.relative_to(self.out_dir).as_posix())
        self.save()
        return temp

    def temps(self) -> list[Path]:
        """The recorded copy names that are really ours (in ``out_dir`` or the aside folder, with this run's token)."""
        pattern = re.compile(rf"^({re.escape(self.aside.name)}/)?{re.escape(_COPY_PREFIX + self.token)}-\d+$")
        return [self.out_dir / t for t in self.doc.get("temps", []) if isinstance(t, str) and pattern.match(t)]

    def move(self, src: Path, dst: Path) -> None:
        """Rename ``src`` to the free path ``dst``; across filesystems, copy then rename within ``dst``'s folder."""
        try:
            os.replace(src, dst)
            return
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
        temp = self.plan_temp(dst.parent)
        try:
            _copy(src, temp)
            os.replace(temp, dst)  # same folder, so same filesystem: atomic
        except BaseException:
            _remove(temp)
            raise
        _remove(src)

    def roll_back(self) -> None:
        """Put the previous outputs back and take the new ones out, whichever moves happened.

        Works from what is on disk, so it is the same for a failure in this
        process and for a run killed half-way, and can be repeated.
        """
        old = [n for n in self.doc.get("old", []) if _plain_name(n)]
        new = [n for n in self.doc.get("new", []) if _plain_name(n)]
        for name in dict.fromkeys([*new, *old]):
            target = self.out_dir / name
            if os.path.lexists(self.aside / name):
                # moved aside, so what stands in its place (if anything) is the new run's
                _remove(target)
                self.move(self.aside / name, target)
            elif name not in old:
                _remove(target)  # no previous entry: whatever is there is the new run's
            # else: never moved aside, still the previous run's
        for temp in self.temps():
            _remove(temp)

    def discard(self) -> None:
        """Remove the aside folder, copy temps and the staging folder, the marker last (so a killed removal is found again)."""
        if self.aside.is_dir() and not self.aside.is_symlink():
            shutil.rmtree(self.aside)
        for temp in self.temps():
            _remove(temp)
        for entry in self.staging.iterdir():
            if entry.name != MARKER:
                _remove(entry)
        (self.staging / MARKER).unlink(missing_ok=True)
        self.staging.rmdir()


def recover(out_dir: Path, *, locked: bool, note: Note | None = None) -> None:
    """Undo a publish a killed run left half-done and remove every stale staging folder in ``out_dir``.

    With the folder's lock held (``locked``) every marked folder is stale;
    without a lock, only those whose process is known to be gone.
    """
    for folder in sorted(out_dir.iterdir()):
        doc = _read_marker(folder)
        if doc is None or not (locked or _owner_gone(doc)):
            continue
        journal = _Journal(out_dir, folder, doc)
        try:
            if doc.get("phase") == "publishing":
                journal.roll_back()
                if note:
                    note(f"put back the previous outputs in {out_dir} that an interrupted run (pid {doc.get('pid')}) had half replaced")
            elif note:
                note(f"removed {folder.name}, left in {out_dir} by an interrupted run (pid {doc.get('pid')})")
            journal.discard()
        except OSError as exc:
            raise PublishError(f"cannot clean up {folder} left by an interrupted run ({exc}); "
                               "fix the folder's permissions, or choose another output folder") from None


def _live_owner(out_dir: Path) -> str:
    pids = sorted({str(doc["pid"]) for f in out_dir.iterdir() if (doc := _read_marker(f)) and "pid" in doc})
    return f" (pid {', '.join(pids)})" if pids else ""


def _check_path(out_dir: Path) -> list[Path]:
    """Refuse a path that is a file or lies under one; return the missing folders to create, outermost last."""
    try:
        mode = os.stat(out_dir).st_mode
    except (FileNotFoundError, NotADirectoryError):
        mode = None
    except OSError as exc:
        raise PublishError(f"cannot use {out_dir} as the output folder ({exc.strerror}); choose another folder") from None
    if mode is not None:
        if not stat.S_ISDIR(mode):
            raise PublishError(f"output folder {out_dir} exists and is not a folder; choose a new folder or a previous run's")
        return []
    if os.path.lexists(out_dir):
        raise PublishError(f"output folder {out_dir} is a link to nothing; remove the link or choose another folder")
    missing = [out_dir]
    for parent in out_dir.parents:
        try:
            parent_mode = os.stat(parent).st_mode
        except (FileNotFoundError, NotADirectoryError):
            missing.append(parent)
            continue
        except OSError as exc:
            raise PublishError(f"cannot use {out_dir} as the output folder: {parent} cannot be read ({exc.strerror})") from None
        if not stat.S_ISDIR(parent_mode):
            raise PublishError(f"output folder {out_dir} cannot be created: {parent} is a file; choose a folder that is not under a file")
        break
    return missing


class StagedOutput:
    """One run's outputs, built in :attr:`path` and published into :attr:`out_dir` together.

    Open with :meth:`open` (``model_pipeline.pipeline.stage_output`` opens
    one for a pipeline run); use as a context manager, or call :meth:`close`.
    Until :meth:`publish` succeeds, ``out_dir``'s entries are as they were
    (but for the run's own hidden staging folder); :meth:`close` removes the
    staging folder (and ``out_dir`` itself when this run created it and
    nothing was published) and releases the lock.
    """

    def __init__(self, out_dir: Path, path: Path, journal: _Journal, *, replaces: tuple[str, ...], last: str | None,
                 lock_fd: int | None, created: list[Path]) -> None:
        self.out_dir = out_dir
        self.path = path
        self.replaces = replaces
        self._journal = journal
        self._last = last
        self._lock_fd = lock_fd
        self._created = created
        self._published = False
        self._keep = False  # a rollback failed: leave the journal for the next run to finish it
        self._closed = False

    @classmethod
    def open(cls, out_dir: str | os.PathLike[str], *, replaces: Iterable[str], last: str | None = None,
             check: Callable[[Path], None] | None = None, note: Note | None = None) -> StagedOutput:
        """Lock ``out_dir`` (creating it if needed), clean what killed runs left, run ``check``, make the staging folder.

        ``replaces``: names a previous run wrote that a publish replaces
        (removed when the new run does not write them); anything else in
        ``out_dir`` is kept. ``last``: the name that proves a run is complete
        (moved aside first, in last). ``check(out_dir)`` may refuse the folder
        once leftovers are cleaned. Raises :class:`PublishError` when the
        folder cannot be used or another run holds it.
        """
        out_dir = Path(out_dir).absolute()
        missing = _check_path(out_dir)
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PublishError(f"cannot create the output folder {out_dir} ({exc.strerror}); choose a folder you can write") from None
        created = [p for p in missing if p.is_dir()]
        lock_fd: int | None = None
        try:
            lock_fd, locked = cls._lock(out_dir)
            recover(out_dir, locked=locked, note=note)
            if check is not None:
                check(out_dir)
            try:
                staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=out_dir))
            except OSError as exc:
                raise PublishError(f"cannot write in the output folder {out_dir} ({exc.strerror}); choose a folder you can write") from None
            doc = {"tool": _TOOL, "token": staging.name.removeprefix(_STAGING_PREFIX), "pid": os.getpid(),
                   "host": socket.gethostname(), "started": time.time(), "phase": "building"}
            journal = _Journal(out_dir, staging, doc)
            try:
                journal.save()
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
        except BaseException:
            cls._release(lock_fd)
            cls._remove_created(created)
            raise
        return cls(out_dir, staging, journal, replaces=tuple(dict.fromkeys(replaces)), last=last, lock_fd=lock_fd, created=created)

    @staticmethod
    def _lock(out_dir: Path) -> tuple[int | None, bool]:
        if fcntl is None:
            return None, False
        try:
            fd = os.open(out_dir, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            raise PublishError(f"cannot open the output folder {out_dir} ({exc.strerror}); choose a folder you can read and write") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise PublishError(f"another lepton run{_live_owner(out_dir)} is writing to {out_dir}; "
                               "wait for it to finish or choose another output folder") from None
        except OSError:
            # a filesystem without flock (some network mounts): run unlocked
            os.close(fd)
            return None, False
        return fd, True

    @staticmethod
    def _release(fd: int | None) -> None:
        if fd is not None:
            os.close(fd)  # closing the only descriptor drops the flock

    @staticmethod
    def _remove_created(created: list[Path]) -> None:
        for folder in created:  # innermost first; stops being possible at the first non-empty one
            try:
                folder.rmdir()
            except OSError:
                return

    def publish(self) -> None:
        """Replace the previous run's entries in ``out_dir`` with everything in :attr:`path`, in one step.

        Raises :class:`PublishError` (also an ``OSError``) when a move fails;
        the moves done are undone first, so ``out_dir`` is as it was.
        """
        if self._published or self._closed:
            raise RuntimeError("this staged output was already published or closed")
        journal, out = self._journal, self.out_dir
        new = sorted(p.name for p in self.path.iterdir() if p.name != MARKER)
        for name in new:
            _open_permissions(self.path / name)
        if self._last in new:  # the commit file: in last
            new.remove(self._last)
            new.append(self._last)
        old = [n for n in dict.fromkeys([*self.replaces, *new]) if os.path.lexists(out / n)]
        if self._last in old:  # and aside first, so no reader pairs it with newer files
            old.remove(self._last)
            old.insert(0, self._last)
        journal.doc.update(phase="publishing", old=old, new=new)
        try:
            journal.save()
            os.mkdir(journal.aside)
            for name in old:
                journal.move(out / name, journal.aside / name)
            for name in new:
                journal.move(self.path / name, out / name)
        except BaseException as exc:
            try:
                journal.roll_back()
            except BaseException as undo:
                self._keep = True
                raise PublishError(f"publishing into {out} failed ({exc}) and putting the previous outputs back failed too "
                                   f"({undo}); the next run into this folder puts them back") from exc
            journal.doc["phase"] = "rolled-back"
            self._save_quietly()
            if isinstance(exc, OSError):
                raise PublishError(f"publishing into {out} failed ({exc}); the previous outputs are back in place") from exc
            raise
        journal.doc["phase"] = "published"  # the commit point: from here a killed run is finished, not undone
        self._save_quietly()
        self._published = True

    def _save_quietly(self) -> None:
        # the folder is consistent either way: if this write fails, a killed run is undone (idempotently) instead
        try:
            self._journal.save()
        except OSError:
            pass

    def close(self) -> None:
        """Remove the staging folder (and ``out_dir`` if this run created it and nothing was published); release the lock."""
        if self._closed:
            return
        self._closed = True
        try:
            if not self._keep:
                self._journal.discard()
            if not self._published:
                self._remove_created(self._created)
        except OSError:
            pass  # what is left is marked: the next run into this folder removes it
        finally:
            self._release(self._lock_fd)

    def __enter__(self) -> StagedOutput:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
