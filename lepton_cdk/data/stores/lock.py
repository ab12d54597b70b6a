"""Who may write to a destination, and which temporary files are lepton's: the destination lock and the staging registry.

Both live under the state folder (``$XDG_STATE_HOME/lepton``, ``~/.local/state/lepton`` by default), named by a
hash of the destination's identity: its resolved path for a local folder, its URI for a bucket.

* :class:`DestinationLock` is an OS file lock (``fcntl.flock``) on ``locks/<hash>.lock``. One sync per
  destination runs at a time; a second one waits (``wait_s``) or fails naming the lock file and its holder.
  The kernel drops the lock when its holder exits, even on ``kill -9``, so a crash never leaves a stale lock.
  The lock is as wide as the state folder: for a bucket it serialises the runs of one machine (one user),
  not runs on other machines.
* :class:`StagingRegistry` records every temporary file a local write creates (``locks/<hash>.staging/``),
  with its device and inode, before any byte goes into it, and forgets it once it is renamed or removed. A
  file is lepton's only when its path and identity match an entry: a name pattern alone proves nothing, so a
  user's ``notes.lepton-tmp-mine`` is an ordinary object. Only the lock holder discards what killed runs left.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import DestinationBusyError, StorageError

LOCK_POLL_S = 0.2  # how often a waiting run retries the lock


def state_home() -> Path:
    """``$XDG_STATE_HOME/lepton`` (``~/.local/state/lepton`` when the variable is unset)."""
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "lepton"


def _slot(identity: str) -> Path:
    return state_home() / "locks" / hashlib.sha256(identity.encode("utf-8", "surrogateescape")).hexdigest()[:16]


class DestinationLock:
    """An exclusive ``flock`` on the lock file of one destination; ``label`` names the destination in messages."""

    def __init__(self, identity: str, label: str) -> None:
        self.identity, self.label = identity, label
        self.path = _slot(identity).with_suffix(".lock")
        self._fd: int | None = None

    def _holder(self) -> str:
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            return f"pid {doc['pid']}, since {doc['started']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "holder unknown"

    def acquire(self, wait_s: float = 0.0) -> None:
        """Take the lock, waiting up to ``wait_s`` seconds; raises :class:`DestinationBusyError` naming it."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StorageError(f"cannot open the lock file {self.path} ({exc.strerror}); make {state_home()} writable or "
                               "point XDG_STATE_HOME at a writable folder") from None
        deadline = time.monotonic() + max(0.0, wait_s)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = self._holder()
                    os.close(fd)
                    waited = f" after waiting {wait_s:g}s" if wait_s > 0 else ""
                    raise DestinationBusyError(
                        f"another sync is writing to {self.label}{waited}: the lock {self.path} is held ({holder}); "
                        "wait for it to finish, or pass --lock-wait SECONDS to wait for it") from None
                time.sleep(LOCK_POLL_S)
        # who holds it, for the message a waiting run prints; the lock is the flock, not this text
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "destination": self.label,
                                  "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}).encode(), 0)
        self._fd = fd

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd is not None

    def release(self) -> None:
        """Drop the lock (the file stays: removing it would race with a run about to lock it)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


@dataclass(frozen=True)
class StagedFile:
    """A temporary file lepton created: its path relative to the destination root and its identity."""

    token: str
    path: str
    dev: int
    ino: int


class StagingRegistry:
    """The temporary files of one local destination that are in flight or were left by a killed run."""

    def __init__(self, identity: str) -> None:
        self.dir = _slot(identity).with_suffix(".staging")

    def add(self, token: str, path: str, st: os.stat_result) -> None:
        """Record a temporary file just created (``st`` from ``fstat`` of its descriptor)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        part = self.dir / f"{token}.part"  # renamed into place: an entry is whole or absent, never torn
        part.write_text(json.dumps({"path": path, "dev": st.st_dev, "ino": st.st_ino}), encoding="utf-8")
        os.replace(part, self.dir / f"{token}.json")

    def remove(self, token: str) -> None:
        """Forget a temporary file that was renamed into place or removed."""
        with contextlib.suppress(FileNotFoundError):
            (self.dir / f"{token}.json").unlink()

    def entries(self) -> list[StagedFile]:
        """Every recorded temporary file."""
        out = []
        try:
            names = sorted(os.listdir(self.dir))
        except FileNotFoundError:
            return out
        for name in names:
            if not name.endswith(".json"):
                continue
            try:
                doc = json.loads((self.dir / name).read_text(encoding="utf-8"))
                out.append(StagedFile(name[:-5], str(doc["path"]), int(doc["dev"]), int(doc["ino"])))
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return out

    def owned(self) -> set[tuple[str, int, int]]:
        """``(path, dev, ino)`` of every recorded temporary file: what a listing must not show as an object."""
        return {(e.path, e.dev, e.ino) for e in self.entries()}
