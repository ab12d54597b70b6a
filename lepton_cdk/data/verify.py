"""Compare two trees, or a tree and a migration manifest, by size and content hash (like ``rclone check``).

Only checksums a store computed itself count as evidence: Cloud Storage's
crc32c and md5, S3's ``ChecksumSHA256``/``ChecksumCRC32C`` of a single-part
object and a plain MD5 ETag, and hashes computed here by reading. A sha256
carried in user metadata is a claim, not evidence, and is not used. When two
objects share no such checksum, both are read and hashed (for a cloud that
read is billed as egress).

Entries a listing leaves out (symbolic links, special files, unreadable
folders; see ``LocalStore.list``) are differences: a tree with a skipped entry
is never called identical to anything.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from lepton_cdk.data.stores import ObjectInfo, ObjectStore

from .manifest import read_migration_manifest


@dataclass
class VerifyReport:
    """Differences found (empty means the two agree) and how objects were compared."""

    source: str
    destination: str
    checked: int = 0
    differences: list[tuple[str, str]] = field(default_factory=list)
    compared_by: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """No differences."""
        return not self.differences

    def to_dict(self) -> dict:
        """The ``--json`` form."""
        return {"source": self.source, "destination": self.destination, "ok": self.ok, "objects_checked": self.checked,
                "compared_by": self.compared_by, "differences": [{"key": k, "problem": p} for k, p in self.differences]}


def _read(store: ObjectStore, info: ObjectInfo) -> dict[str, str]:
    d = store.read_digest(info)
    return {"sha256": d.sha256, "crc32c": d.crc32c}


def _compare(a: dict[str, str], b: dict[str, str]) -> tuple[str, bool] | None:
    for algo in ("sha256", "crc32c", "md5"):
        if algo in a and algo in b:
            return algo, a[algo] == b[algo]
    return None


def content_matches(source: ObjectStore, s: ObjectInfo, destination: ObjectStore,
                    d: ObjectInfo) -> tuple[bool, str, dict[str, str], dict[str, str]]:
    """Whether two objects of equal size hold the same bytes: ``(same, algorithm, source checksums, destination checksums)``.

    Checksums the stores computed themselves first; when they share none, the sides without a sha256 are read.
    """
    a, b = source.server_checksums(s), destination.server_checksums(d)
    got = _compare(a, b)
    if got is not None:
        return got[1], got[0], a, b
    a, b = a if "sha256" in a else _read(source, s), b if "sha256" in b else _read(destination, d)
    got = _compare(a, b)
    return bool(got and got[1]), "sha256 (read)", a, b


def matches_recorded(store: ObjectStore, info: ObjectInfo, want: dict[str, str]) -> bool | None:
    """Whether the object holds the bytes ``want`` (sha256 hex / crc32c base64) describes; None when nothing compares."""
    want = {k: v for k, v in want.items() if v}
    got = _compare(store.server_checksums(info), want)
    if got is None:
        got = _compare(_read(store, info), want)
    return None if got is None else got[1]


def _listing(store: ObjectStore, side: str, report: VerifyReport) -> dict[str, ObjectInfo]:
    """The store's objects; every entry its listing leaves out is a difference."""
    def on_skip(key: str, reason: str) -> None:
        report.differences.append((key, f"skipped at the {side}, not compared: {reason}"))

    return {o.key: o for o in store.list(on_skip=on_skip)}


def verify_trees(source: ObjectStore, destination: ObjectStore, *, workers: int = 8) -> VerifyReport:
    """Every source object must be at the destination with the same size and hash, and nothing more (nothing skipped)."""
    source.check()
    destination.check()
    report = VerifyReport(source.uri, destination.uri)
    src = _listing(source, "source", report)
    dst = _listing(destination, "destination", report)
    skipped = len(report.differences)
    for key in sorted(src.keys() - dst.keys()):
        report.differences.append((key, "missing at the destination"))
    for key in sorted(dst.keys() - src.keys()):
        report.differences.append((key, "only at the destination"))
    both = sorted(src.keys() & dst.keys())

    def check(key: str) -> tuple[str, str | None, str]:
        s, d = src[key], dst[key]
        if s.size != d.size:
            return key, f"size differs: {s.size} bytes at the source, {d.size} at the destination", "size"
        same, how, _, _ = content_matches(source, s, destination, d)
        return key, None if same else f"content differs ({'sha256' if how == 'sha256 (read)' else how})", how

    with ThreadPoolExecutor(max(1, workers)) as pool:
        for key, problem, how in pool.map(check, both):
            report.compared_by[how] = report.compared_by.get(how, 0) + 1
            if problem:
                report.differences.append((key, problem))
    report.checked = len(src.keys() | dst.keys()) + skipped
    report.differences.sort()
    return report


def verify_against_manifest(source: ObjectStore, destination: ObjectStore, manifest_path, *, workers: int = 8) -> VerifyReport:
    """Every object the manifest lists must be at the source and the destination with its recorded size and hash."""
    entries = read_migration_manifest(manifest_path)
    source.check()
    destination.check()
    report = VerifyReport(source.uri, destination.uri)
    src = _listing(source, "source", report)
    dst = _listing(destination, "destination", report)

    def check_one(store: ObjectStore, listing: dict, key: str, size: int, want: dict[str, str], side: str):
        info = listing.get(key)
        if info is None:
            return f"{side}: missing", "size"
        if info.size != size:
            return f"{side}: size differs: {info.size} bytes, the manifest says {size}", "size"
        have = store.server_checksums(info)
        got = _compare(have, want)
        how = got[0] if got else "sha256 (read)"
        if got is None:
            got = _compare(_read(store, info), want)
        if got is None:
            return f"{side}: no checksum to compare", how
        return (None if got[1] else f"{side}: content differs from the manifest ({got[0]})"), how

    def check(entry):
        out = []
        want_dst = {k: v for k, v in (("sha256", entry.sha256), ("crc32c", entry.crc32c)) if v}
        want_src = {k: v for k, v in (("sha256", entry.source_sha256), ("crc32c", entry.source_crc32c)) if v}
        out.append((entry.dest_key, *check_one(destination, dst, entry.dest_key, entry.bytes, want_dst, "destination")))
        out.append((entry.key, *check_one(source, src, entry.key, entry.source_bytes, want_src, "source")))
        return out

    with ThreadPoolExecutor(max(1, workers)) as pool:
        for results in pool.map(check, entries):
            for key, problem, how in results:
                report.compared_by[how] = report.compared_by.get(how, 0) + 1
                if problem:
                    report.differences.append((key, problem))
    report.checked = len(entries)
    report.differences.sort()
    return report
