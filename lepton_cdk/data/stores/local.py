"""A local folder as an object store: keys are relative '/'-separated paths.

Nothing is written, read or removed outside the folder, and nothing lepton did not create is taken for its own:

* **Keys.** A key must be a plain relative path: no empty, ``.`` or ``..`` segment, no leading or trailing
  ``/``, no NUL byte, no segment over 255 bytes. Any other key is refused with the reason
  (:meth:`LocalStore.key_problem`); buckets keep such keys as they are, only a folder cannot hold them.
* **Links.** The folder given is the root (it may itself be a link: the user named it). Below it every path is
  opened one folder at a time from its parent's descriptor with ``O_NOFOLLOW``, so a key whose folder is a
  symbolic link (or a file) is refused and no write, read or delete goes through a link, wherever it points.
  A link at a key's own name is replaced by the file, never written through.
* **Listing.** Regular files only. Symbolic links, special files (FIFOs, sockets, devices) and folders that
  cannot be read are reported through ``on_skip`` with the reason, never dropped silently.
* **Temporary files.** A write goes to ``.NAME.lepton-tmp-<16 hex digits>`` beside the final name (same folder,
  so the rename is atomic), created with ``O_EXCL`` (never over an existing file) and recorded in the staging
  registry (see ``storage.lock``) with its device and inode before a byte goes in; it is fsynced, read back,
  hashed and renamed onto the final name only when it matches, so an interrupted or corrupted copy is never
  visible under its key. Listings hide, and :meth:`LocalStore.discard_partial_writes` removes, only files
  whose path and identity match a registry entry: a user's file named like a temporary file is an ordinary
  object. Only the holder of the destination lock discards what killed runs left.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from lepton_cdk.contract.checksums import StreamingDigest

from .base import ExpectedDigest, ObjectInfo, ObjectStore, OnSkip, WriteResult
from .errors import (
    IntegrityError,
    ObjectNotFoundError,
    SourceChangedError,
    StorageError,
    StoreConfigError,
    UnwritableKeyError,
)
from .lock import StagingRegistry

TMP_MARKER = ".lepton-tmp-"
NAME_MAX_BYTES = 255  # the longest file name Linux and macOS file systems take
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_BLOCKED = (errno.ENOTDIR, errno.ELOOP)  # what O_NOFOLLOW | O_DIRECTORY gives for a link or a file


def local_key_problem(key: str) -> str | None:
    """Why ``key`` cannot be a relative file path below a folder (a short phrase), or None when it can."""
    if not key:
        return "it is empty"
    if "\x00" in key:
        return "it holds a NUL byte"
    if key.startswith("/"):
        return "it starts with '/'"
    if key.endswith("/"):
        return "it ends with '/', which no file name can"
    for segment in key.split("/"):
        if segment == "":
            return "it has an empty segment ('//')"
        if segment in (".", ".."):
            return f"it has a {segment!r} segment"
        if len(os.fsencode(segment)) > NAME_MAX_BYTES:
            return f"a segment is longer than {NAME_MAX_BYTES} bytes"
    return None


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "symbolic link"), (stat.S_ISFIFO, "named pipe (FIFO)"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"), (stat.S_ISDIR, "folder"),
                       (stat.S_ISREG, "file")):
        if test(mode):
            return name
    return "special file"


class LocalStore(ObjectStore):
    """Objects are the regular files under ``root`` (lepton's own temporary files excepted)."""

    cloud = "local"
    keys_are_paths = True

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().absolute()
        self.uri = str(self.root)
        self._staging: StagingRegistry | None = None

    def region(self) -> str:
        """Local data has no cloud region."""
        return "local"

    def location(self) -> tuple[str, str]:
        """The resolved folder: an alias through a link is the same location."""
        return "file", os.path.realpath(self.root).rstrip("/") + "/"

    def lock_identity(self) -> str:
        """The resolved folder, so two spellings of one folder share one lock."""
        return "file://" + os.path.realpath(self.root)

    @property
    def staging(self) -> StagingRegistry:
        """The registry of this folder's temporary files."""
        if self._staging is None:
            self._staging = StagingRegistry(self.lock_identity())
        return self._staging

    def check(self, *, for_write: bool = False) -> None:
        """A source folder must exist; a missing destination folder is created by the first write."""
        if self.root.is_dir():
            return
        if self.root.exists():
            raise StoreConfigError(f"{self.root} is a file, not a folder; give the folder that holds the data")
        if not for_write:
            raise StoreConfigError(f"source folder {self.root} does not exist; check the path")

    def key_problem(self, key: str) -> str | None:
        """Why ``key`` cannot be a file in this folder (the whole one-line message), or None."""
        why = local_key_problem(key)
        if why is None:
            return None
        return f"key {key!r} cannot be a file in {self.root}: {why}; rename it at the source or leave it out with --exclude"

    # -- paths without links ------------------------------------------------------------------------

    def _blocked(self, key: str, folders: list[str], parent_fd: int, verb: str) -> UnwritableKeyError:
        where = "/".join(folders)
        try:
            kind = _kind(os.stat(folders[-1], dir_fd=parent_fd, follow_symlinks=False).st_mode)
        except OSError:
            kind = "not a folder"
        if kind == "symbolic link":
            return UnwritableKeyError(f"cannot {verb} {key!r} in {self.root}: {where!r} there is a symbolic link and lepton "
                                      "goes through no link (it could lead outside the folder); replace the link with a "
                                      "folder or leave the key out with --exclude")
        return UnwritableKeyError(f"cannot {verb} {key!r} in {self.root}: {where!r} there is a {kind}, so it cannot also be "
                                  "a folder; move it or leave the key out with --exclude")

    def _open_folders(self, key: str, folders: list[str], create: bool, verb: str) -> list[int] | None:
        """Descriptors of the root and of each folder on ``key``'s path, or None when one is missing (and not ``create``)."""
        fds: list[int] = []
        try:
            if create:
                os.makedirs(self.root, exist_ok=True)
            try:
                fds.append(os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
            except FileNotFoundError:
                return None
            for i, segment in enumerate(folders):
                for attempt in (0, 1):
                    try:
                        fds.append(os.open(segment, _DIR_FLAGS, dir_fd=fds[-1]))
                        break
                    except FileNotFoundError:
                        if not create or attempt:
                            for fd in fds:
                                os.close(fd)
                            return None
                        with contextlib.suppress(FileExistsError):
                            os.mkdir(segment, 0o777, dir_fd=fds[-1])
                    except OSError as exc:
                        if exc.errno not in _BLOCKED:
                            raise
                        raise self._blocked(key, folders[:i + 1], fds[-1], verb) from None
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        return fds

    @contextmanager
    def _parent(self, key: str, *, create: bool, verb: str = "write") -> Iterator[tuple[list[int], str] | None]:
        """``(descriptors of the root and each folder of key, file name)``, every folder opened without following links.

        Yields None when a folder is missing and ``create`` is False. Raises :class:`UnwritableKeyError` when
        ``key`` is not a plain relative path or a folder on its way is a link or a file.
        """
        problem = self.key_problem(key)
        if problem:
            raise UnwritableKeyError(problem)
        *folders, name = key.split("/")
        fds = self._open_folders(key, folders, create, verb)
        try:
            yield None if fds is None else (fds, name)
        finally:
            for fd in fds or ():
                os.close(fd)

    def _info(self, key: str, st: os.stat_result) -> ObjectInfo:
        return ObjectInfo(key=key, size=st.st_size, version=str(st.st_mtime_ns))

    # -- interface ----------------------------------------------------------------------------------

    def list(self, on_skip: OnSkip | None = None) -> Iterator[ObjectInfo]:
        """Regular files under the folder; links, special files and unreadable folders go to ``on_skip``, never followed."""
        skip = on_skip or (lambda key, reason: None)
        owned = self.staging.owned()
        try:
            root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            return
        stack: list[tuple[int, str, Iterator[os.DirEntry]]] = []
        try:
            stack.append((root_fd, "", iter(self._entries(root_fd))))
            while stack:
                fd, rel, entries = stack[-1]
                entry = next(entries, None)
                if entry is None:
                    stack.pop()
                    os.close(fd)
                    continue
                key = rel + entry.name
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # removed since its folder was read: no longer an object
                except OSError as exc:
                    skip(key, f"cannot be examined ({exc.strerror}); not copied")
                    continue
                if stat.S_ISREG(st.st_mode):
                    if (key, st.st_dev, st.st_ino) not in owned:  # else a temporary file of lepton's own
                        yield self._info(key, st)
                elif stat.S_ISDIR(st.st_mode):
                    sub = None
                    try:
                        sub = os.open(entry.name, _DIR_FLAGS, dir_fd=fd)
                        stack.append((sub, key + "/", iter(self._entries(sub))))
                    except OSError as exc:
                        if sub is not None:
                            os.close(sub)
                        skip(key + "/", f"a folder that cannot be read ({exc.strerror}); nothing under it was listed")
                elif stat.S_ISLNK(st.st_mode):
                    skip(key, "a symbolic link; links are not followed, copy what it points to on its own if you need it")
                else:
                    skip(key, f"a {_kind(st.st_mode)}, not a regular file; only regular files are copied")
        finally:
            for fd, _, _ in stack:
                os.close(fd)

    @staticmethod
    def _entries(fd: int) -> list[os.DirEntry]:
        with os.scandir(fd) as it:
            return sorted(it, key=lambda e: e.name)

    def head(self, key: str) -> ObjectInfo | None:
        """Size and mtime of one regular file, or None (also when the key cannot be a file here)."""
        try:
            with self._parent(key, create=False, verb="look up") as found:
                if found is None:
                    return None
                fds, name = found
                st = os.stat(name, dir_fd=fds[-1], follow_symlinks=False)
        except (UnwritableKeyError, FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise StorageError(f"cannot look up {self.root / key}: {exc.strerror}; check the folder's permissions") from None
        return self._info(key, st) if stat.S_ISREG(st.st_mode) else None

    @contextmanager
    def open_read(self, info: ObjectInfo) -> Iterator[Iterator[bytes]]:
        """Stream the file; a size or mtime different from the listing means it changed."""
        path = self.root / info.key
        try:
            with self._parent(info.key, create=False, verb="read") as found:
                if found is None:
                    raise FileNotFoundError
                fds, name = found
                # O_NONBLOCK: a FIFO swapped in after the listing must not hang the run (no effect on regular files)
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=fds[-1])
        except FileNotFoundError:
            raise ObjectNotFoundError(f"{path} disappeared after it was listed") from None
        except UnwritableKeyError:
            raise SourceChangedError(f"{path}: a folder on its path was replaced (by a link or a file) after it was "
                                     "listed") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise SourceChangedError(f"{path} became a symbolic link after it was listed; links are not followed") from None
            raise StorageError(f"cannot read {path}: {exc.strerror}; check its permissions") from None
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode) or self._info(info.key, st).fingerprint != info.fingerprint:
                raise SourceChangedError(f"{path} changed after it was listed")

            def chunks() -> Iterator[bytes]:
                try:
                    while chunk := fh.read(self.part_size):
                        yield chunk
                except OSError as exc:
                    raise StorageError(f"cannot read {path}: {exc.strerror}") from None
                if self._info(info.key, os.fstat(fh.fileno())).fingerprint != info.fingerprint:
                    raise SourceChangedError(f"{path} changed while it was being read")

            yield chunks()

    def discard_partial_writes(self) -> int:
        """Delete the temporary files killed runs left here (registry entries whose file still matches); needs the lock."""
        if not self.holds_lock:
            raise StorageError(f"only the holder of the lock on {self.root} may discard its temporary files; "
                               "call discard_partial_writes inside store.exclusive()")
        removed = 0
        for entry in self.staging.entries():
            try:
                with self._parent(entry.path, create=False, verb="clean up") as found:
                    if found is not None:
                        fds, name = found
                        st = os.stat(name, dir_fd=fds[-1], follow_symlinks=False)
                        if stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) == (entry.dev, entry.ino):
                            os.unlink(name, dir_fd=fds[-1])
                            removed += 1
            except (UnwritableKeyError, OSError):
                pass  # gone, renamed into place, or no longer ours: nothing of the user's is touched
            self.staging.remove(entry.token)
        return removed

    def server_checksums(self, info: ObjectInfo) -> dict[str, str]:
        """A local file's checksums, computed by reading it (local reads cost nothing)."""
        d = self.read_digest(info)
        return {"sha256": d.sha256, "crc32c": d.crc32c}

    def write(self, key: str, chunks: Iterable[bytes], size: int, expected: ExpectedDigest) -> WriteResult:
        """Write a registered temporary file, fsync, read back and compare checksums, then rename it into place."""
        path = self.root / key
        token = secrets.token_hex(8)
        try:
            with self._parent(key, create=True) as found:
                if found is None:
                    raise StorageError(f"cannot write {path}: a folder on its path vanished while it was being made; "
                                       "re-run the sync")
                fds, name = found
                folders = key.split("/")[:-1]
                tmp_name = f".{name}{TMP_MARKER}{token}"
                if len(os.fsencode(tmp_name)) > NAME_MAX_BYTES:
                    tmp_name = f"{TMP_MARKER}{token}"
                return self._write_in(fds[-1], key, "/".join([*folders, tmp_name]), tmp_name, name, token, chunks, expected)
        except StorageError:
            raise
        except IsADirectoryError:
            raise UnwritableKeyError(f"cannot write {key!r} in {self.root}: {key!r} there is a folder, so it cannot also be "
                                     "a file; move that folder or leave the key out with --exclude") from None
        except OSError as exc:
            raise StorageError(f"cannot write {path}: {exc.strerror}; check the folder's permissions and free space") from None

    def _write_in(self, parent_fd: int, key: str, tmp_rel: str, tmp_name: str, name: str, token: str,
                  chunks: Iterable[bytes], expected: ExpectedDigest) -> WriteResult:
        fd = os.open(tmp_name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666, dir_fd=parent_fd)
        registered = False
        try:
            with os.fdopen(fd, "w+b") as out:
                self.staging.add(token, tmp_rel, os.fstat(out.fileno()))
                registered = True
                for chunk in chunks:
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
                want = expected()
                out.seek(0)
                back = StreamingDigest()
                while chunk := out.read(self.part_size):
                    back.update(chunk)
                got = back.result()
                if (got.bytes, got.sha256, got.crc32c) != (want.bytes, want.sha256, want.crc32c):
                    raise IntegrityError(f"{self.root / key}: the written copy (sha256 {got.sha256[:12]}.., {got.bytes} bytes) "
                                         f"differs from the source (sha256 {want.sha256[:12]}.., {want.bytes} bytes); "
                                         "nothing was kept, re-run the sync")
                version = str(os.fstat(out.fileno()).st_mtime_ns)
            os.rename(tmp_name, name, src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name, dir_fd=parent_fd)
            raise
        finally:
            if registered:
                self.staging.remove(token)
        return WriteResult(key=key, digest=got, etag=None, version=version, verified_by="read-back sha256")

    def delete(self, key: str) -> None:
        """Remove the regular file and the folders it leaves empty; never through a link, never anything else."""
        path = self.root / key
        try:
            with self._parent(key, create=False, verb="delete") as found:
                if found is None:
                    return
                fds, name = found
                try:
                    st = os.stat(name, dir_fd=fds[-1], follow_symlinks=False)
                except FileNotFoundError:
                    return
                if not stat.S_ISREG(st.st_mode):
                    raise StorageError(f"{path} is now a {_kind(st.st_mode)}, not the file that was listed; left as it is")
                os.unlink(name, dir_fd=fds[-1])
                folders = key.split("/")[:-1]
                for depth in range(len(folders), 0, -1):  # folders[depth - 1] lives in fds[depth - 1]
                    try:
                        os.rmdir(folders[depth - 1], dir_fd=fds[depth - 1])
                    except OSError:
                        break  # not empty (or not ours to remove): stop climbing
        except StorageError:
            raise
        except OSError as exc:
            raise StorageError(f"cannot delete {path}: {exc.strerror}; check the folder's permissions") from None
