"""`lepton data sync` between local folders: verified copies, incremental runs, resume after a kill,
corruption and concurrent changes caught, the migration manifest, and `lepton data verify`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lepton_cdk.contract.checksums import digest_file
from lepton_cdk.data import (
    Journal,
    SyncOptions,
    build_plan,
    read_migration_manifest,
    run_sync,
    verify_against_manifest,
    verify_trees,
)
from lepton_cdk.data.stores import LocalStore
from lepton_cdk.data.stores.local import TMP_MARKER
from tests.support.trees import tree, write_tree

REPO = Path(__file__).resolve().parents[2]


def sync(src: Path, dst: Path, journal: Path, *, mode="incremental", store_cls=LocalStore, src_cls=LocalStore,
         part_size=64 * 1024, **kw):
    source, destination = src_cls(src), store_cls(dst)
    source.part_size = destination.part_size = part_size
    j = Journal(journal, source.uri, destination.uri)
    plan = build_plan(source, destination, mode=mode, journal=j, **kw)
    return run_sync(plan, j, SyncOptions(workers=4, backoff_s=0.01, manifest_path=journal.with_suffix(".manifest.json")))


@pytest.fixture
def src(tmp_path) -> Path:
    files = {f"small/{i:03d}.bin": os.urandom(100 + i) for i in range(40)}
    files.update({"big/blob.bin": os.urandom(700_000), "zero": b"", "with space/ünïcode ✓.txt": "héllo".encode()})
    return write_tree(tmp_path / "src", files)


def test_local_sync_copies_every_object_verified_and_writes_the_manifest(src, tmp_path):
    result = sync(src, tmp_path / "dst", tmp_path / "j.jsonl")
    assert result.ok and len(result.copied) == 43
    assert tree(tmp_path / "dst") == tree(src)
    assert {r.verified_by for r in result.copied} == {"read-back sha256"}
    entries = {e.key: e for e in read_migration_manifest(result.manifest_path)}
    assert set(entries) == set(tree(src))
    big = digest_file(src / "big/blob.bin")
    assert (entries["big/blob.bin"].sha256, entries["big/blob.bin"].crc32c, entries["big/blob.bin"].bytes) == \
        (big.sha256, big.crc32c, big.bytes)
    assert verify_against_manifest(LocalStore(src), LocalStore(tmp_path / "dst"), result.manifest_path).ok
    assert not [p for p in (tmp_path / "dst").rglob("*") if TMP_MARKER in p.name]


def test_incremental_rerun_moves_zero_bytes_and_one_change_moves_exactly_it(src, tmp_path):
    journal = tmp_path / "j.jsonl"
    sync(src, tmp_path / "dst", journal)
    again = sync(src, tmp_path / "dst", journal)
    assert again.ok and again.copied == [] and again.bytes_sent == 0 and again.skipped == 43
    (src / "small/007.bin").write_bytes(b"changed!" * 20)
    (src / "new.txt").write_bytes(b"new object")
    third = sync(src, tmp_path / "dst", journal)
    assert sorted(r.key for r in third.copied) == ["new.txt", "small/007.bin"]
    assert third.bytes_sent == 160 + 10
    assert tree(tmp_path / "dst") == tree(src)


def test_without_a_journal_identical_objects_are_recognised_by_hash(src, tmp_path):
    sync(src, tmp_path / "dst", tmp_path / "j1.jsonl")
    fresh = sync(src, tmp_path / "dst", tmp_path / "other-journal.jsonl")
    assert fresh.copied == [] and fresh.skipped == 43


def test_full_with_delete_removes_what_the_source_lacks_and_without_delete_keeps_it(src, tmp_path):
    dst = write_tree(tmp_path / "dst", {"stale/old.bin": b"old", "zero": b"not zero"})
    kept = sync(src, dst, tmp_path / "j.jsonl", mode="full")
    assert kept.ok and len(kept.copied) == 43 and (dst / "stale/old.bin").exists() and (dst / "zero").read_bytes() == b""
    removed = sync(src, dst, tmp_path / "j.jsonl", mode="full", delete=True)
    assert removed.deleted == ["stale/old.bin"] and not (dst / "stale").exists()
    assert tree(dst) == tree(src)


def test_partial_sync_moves_only_the_selected_subset(src, tmp_path):
    result = sync(src, tmp_path / "dst", tmp_path / "j.jsonl", mode="partial", include=("small/00*",), exclude=("small/009.bin",))
    assert sorted(tree(tmp_path / "dst")) == [f"small/00{i}.bin" for i in range(9)]
    assert result.ok


class CorruptingStore(LocalStore):
    """A destination whose writes flip one byte on the way in, like a bad link or disk."""

    def write(self, key, chunks, size, expected):
        def flipped():
            for i, chunk in enumerate(chunks):
                if i == 0 and chunk:
                    chunk = bytes([chunk[0] ^ 0x01]) + chunk[1:]
                yield chunk
        return super().write(key, flipped(), size, expected)


def test_a_corrupt_byte_is_caught_retried_and_never_left_under_the_key(src, tmp_path):
    result = sync(src, tmp_path / "dst", tmp_path / "j.jsonl", store_cls=CorruptingStore, include=("big/**",))
    assert not result.ok and result.copied == []
    [(key, error)] = result.failed
    assert key == "big/blob.bin" and "differs from the source" in error and "5 attempts" in error
    assert result.retries == 4
    assert list((tmp_path / "dst").rglob("*.bin")) == []  # neither the bad copy nor a temp file
    assert not [p for p in (tmp_path / "dst").rglob("*") if TMP_MARKER in p.name]


class ChangingSource(LocalStore):
    """A source folder where another process rewrites big/blob.bin while it is being read."""

    def open_read(self, info):
        cm = super().open_read(info)
        if info.key != "big/blob.bin":
            return cm

        class Wrapped:
            def __enter__(inner):
                chunks = cm.__enter__()

                def gen():
                    for i, chunk in enumerate(chunks):
                        if i == 1:
                            with open(self.root / info.key, "ab") as fh:
                                fh.write(b"appended by someone else")
                        yield chunk
                return gen()

            def __exit__(inner, *exc):
                return cm.__exit__(*exc)
        return Wrapped()


def test_a_source_object_changed_during_the_run_is_reported_and_not_copied(src, tmp_path):
    result = sync(src, tmp_path / "dst", tmp_path / "j.jsonl", src_cls=ChangingSource)
    assert [k for k, _ in result.changed_during_run] == ["big/blob.bin"]
    assert not (tmp_path / "dst/big/blob.bin").exists()
    assert len(result.copied) == 42 and not result.ok
    resumed = sync(src, tmp_path / "dst", tmp_path / "j.jsonl")  # the next run takes the new version, and only it
    assert [r.key for r in resumed.copied] == ["big/blob.bin"]
    assert tree(tmp_path / "dst") == tree(src)


KILLER = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from lepton_cdk.data.stores import LocalStore
    from lepton_cdk.data import Journal, SyncOptions, build_plan, run_sync
    import lepton_cdk.data.engine as engine

    src, dst, journal, after_objects, mid_object = sys.argv[1:4] + [int(a) for a in sys.argv[4:6]]
    done = [0]
    real_record = Journal.record

    def record(self, rec):
        real_record(self, rec)
        done[0] += 1
        if done[0] == after_objects and not mid_object:
            os.kill(os.getpid(), signal.SIGKILL)
    Journal.record = record

    real_stream = engine._Copier._stream
    def stream(self, chunks, digest, counter):
        for i, chunk in enumerate(real_stream(self, chunks, digest, counter)):
            if mid_object and done[0] == after_objects and i == 2:
                os.kill(os.getpid(), signal.SIGKILL)  # mid-object: some parts written, not finished
            yield chunk
    engine._Copier._stream = stream

    s, d = LocalStore(src), LocalStore(dst)
    s.part_size = d.part_size = 64 * 1024
    j = Journal(journal, s.uri, d.uri)
    run_sync(build_plan(s, d, mode="full", journal=j), j, SyncOptions(workers=1))
""")


@pytest.mark.parametrize(("after_objects", "mid_object"), [(0, 1), (1, 0), (20, 0), (42, 0)],
                         ids=["mid-multipart-object", "after-1", "after-20", "before-the-last"])
def test_a_sync_killed_at_any_point_resumes_without_resending_finished_objects(src, tmp_path, after_objects, mid_object):
    dst, journal = tmp_path / "dst", tmp_path / "journal.jsonl"
    env = {**os.environ, "PYTHONPATH": str(REPO), "CI": "true"}
    killed = subprocess.run([sys.executable, "-c", KILLER, str(src), str(dst), str(journal), str(after_objects), str(mid_object)],
                            env=env, capture_output=True, text=True, timeout=60)
    assert killed.returncode == -9, killed.stderr
    finished = {p.relative_to(dst).as_posix(): p.stat().st_mtime_ns for p in dst.rglob("*") if p.is_file() and TMP_MARKER not in p.name}
    assert len(finished) == after_objects  # the big object (first, largest first) was never visible half-written
    proc = subprocess.run([sys.executable, "-m", "lepton_cdk.cli", "data", "sync", str(src), str(dst), "--mode", "full",
                           "--journal", str(journal), "--json"], env=env, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["objects_resumed"] == after_objects
    assert summary["objects_copied"] == 43 - after_objects
    for key, mtime in finished.items():  # nothing finished before the kill was written again
        assert (dst / key).stat().st_mtime_ns == mtime, key
    assert tree(dst) == tree(src)
    # the run completed: a new full run copies everything again
    again = subprocess.run([sys.executable, "-m", "lepton_cdk.cli", "data", "sync", str(src), str(dst), "--mode", "full",
                            "--journal", str(journal), "--json", "--dry-run"], env=env, capture_output=True, text=True,
                           timeout=60, cwd=REPO)
    assert json.loads(again.stdout)["objects_to_copy"] == 43


def test_transcode_parquet_proves_equal_rows_and_sends_fewer_bytes(tmp_path):
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from model_pipeline.datasets import write_sample

    src = tmp_path / "src"
    write_sample(src / "tables", n_source=3000, n_target=300)
    (src / "notes.txt").write_text("not a table")
    result = sync(src, tmp_path / "dst", tmp_path / "j.jsonl", transcode="parquet")
    assert result.ok
    assert sorted(tree(tmp_path / "dst")) == ["notes.txt", "tables/source.parquet", "tables/target.parquet"]
    rec = {r.key: r for r in result.copied}["tables/source.csv"]
    assert rec.transcoded["rows"] == 3000 and rec.dest_bytes < rec.bytes * 0.6
    csv_table = pacsv.read_csv(src / "tables/source.csv")
    assert pq.read_table(tmp_path / "dst/tables/source.parquet").equals(csv_table)
    entries = {e.key: e for e in read_migration_manifest(result.manifest_path)}
    assert entries["tables/source.csv"].dest_key == "tables/source.parquet"
    assert entries["tables/source.csv"].source_sha256 == digest_file(src / "tables/source.csv").sha256
    assert verify_against_manifest(LocalStore(src), LocalStore(tmp_path / "dst"), result.manifest_path).ok
    assert sync(src, tmp_path / "dst", tmp_path / "j.jsonl", transcode="parquet").copied == []  # incremental: nothing


def test_a_csv_that_parquet_cannot_hold_is_refused_and_nothing_is_sent(tmp_path):
    src = write_tree(tmp_path / "src", {"bad.csv": b"a,b\n1,2\n3\n"})  # a row with a missing field
    result = sync(src, tmp_path / "dst", tmp_path / "j.jsonl", transcode="parquet")
    assert not result.ok and "cannot parse it as CSV" in result.failed[0][1]
    assert not list(tmp_path.glob("dst/**/*.parquet"))


def test_verify_lists_missing_extra_resized_and_corrupted_objects(src, tmp_path):
    dst = tmp_path / "dst"
    result = sync(src, dst, tmp_path / "j.jsonl")
    assert verify_trees(LocalStore(src), LocalStore(dst)).ok
    (dst / "small/001.bin").unlink()
    (dst / "extra.bin").write_bytes(b"x")
    (dst / "small/002.bin").write_bytes(b"short")
    blob = bytearray((dst / "big/blob.bin").read_bytes())
    blob[123_456] ^= 0xFF  # one flipped bit pattern in one byte, same size
    (dst / "big/blob.bin").write_bytes(bytes(blob))
    report = verify_trees(LocalStore(src), LocalStore(dst))
    assert dict(report.differences) == {
        "big/blob.bin": "content differs (sha256)", "extra.bin": "only at the destination",
        "small/001.bin": "missing at the destination",
        "small/002.bin": "size differs: 102 bytes at the source, 5 at the destination"}
    by_manifest = verify_against_manifest(LocalStore(src), LocalStore(dst), result.manifest_path)
    assert {k for k, _ in by_manifest.differences} == {"big/blob.bin", "small/001.bin", "small/002.bin"}


def test_cli_verify_exits_non_zero_listing_differences(src, tmp_path):
    dst = tmp_path / "dst"
    sync(src, dst, tmp_path / "j.jsonl")
    (dst / "zero").write_bytes(b"!")
    env = {**os.environ, "CI": "true"}
    proc = subprocess.run([sys.executable, "-m", "lepton_cdk.cli", "data", "verify", str(src), str(dst)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "  zero: size differs: 0 bytes at the source, 1 at the destination" in proc.stdout
    assert proc.stderr.strip() == f"error: 1 difference(s) between {src} and {dst}"


def test_one_journal_file_for_two_pairs_keeps_their_records_apart(src, tmp_path):
    journal = tmp_path / "shared.jsonl"
    sync(src, tmp_path / "dst1", journal)
    assert len(Journal(journal, LocalStore(src).uri, LocalStore(tmp_path / "dst1").uri).records) == 43
    assert Journal(journal, LocalStore(src).uri, LocalStore(tmp_path / "dst2").uri).records == {}
    other = sync(src, tmp_path / "dst2", journal)
    assert len(other.copied) == 43 and tree(tmp_path / "dst2") == tree(src)
    assert sync(src, tmp_path / "dst1", journal).copied == []


class UnlistableStore(LocalStore):
    """A real local folder that refuses to be listed: proves --no-traverse never walks the destination."""

    def list(self):
        raise AssertionError("the destination was listed despite no_traverse")


def test_no_traverse_trusts_the_journal_moves_only_changes_and_misses_only_what_verify_finds(src, tmp_path):
    dst, journal = tmp_path / "dst", tmp_path / "j.jsonl"
    sync(src, dst, journal)
    again = sync(src, dst, journal, store_cls=UnlistableStore, no_traverse=True)
    assert again.ok and again.copied == [] and again.skipped == 43
    (src / "small/007.bin").write_bytes(b"changed!" * 20)
    (src / "new.txt").write_bytes(b"new object")
    third = sync(src, dst, journal, store_cls=UnlistableStore, no_traverse=True)
    assert sorted(r.key for r in third.copied) == ["new.txt", "small/007.bin"] and third.bytes_sent == 160 + 10
    assert tree(dst) == tree(src)
    # the documented risk: a copy changed at the destination behind lepton's back is not seen without the listing ...
    (dst / "small/011.bin").write_bytes(b"tampered")
    assert sync(src, dst, journal, store_cls=UnlistableStore, no_traverse=True).copied == []
    report = verify_trees(LocalStore(src), LocalStore(dst))  # ... `lepton data verify` finds it
    assert [k for k, _ in report.differences] == ["small/011.bin"]
    assert [r.key for r in sync(src, dst, journal).copied] == ["small/011.bin"]  # and a listing run repairs it
    assert tree(dst) == tree(src)


def test_no_traverse_without_a_journal_looks_objects_up_one_by_one(src, tmp_path):
    dst = tmp_path / "dst"
    sync(src, dst, tmp_path / "j1.jsonl")
    (dst / "zero").unlink()
    fresh = sync(src, dst, tmp_path / "other-journal.jsonl", store_cls=UnlistableStore, no_traverse=True)
    assert [r.key for r in fresh.copied] == ["zero"] and fresh.skipped == 42  # identical by hash, one missing
    assert tree(dst) == tree(src)


def test_no_traverse_refuses_delete_and_the_cli_flag_skips_the_listing(src, tmp_path):
    from lepton_cdk.data import SyncError

    with pytest.raises(SyncError, match="--no-traverse"):
        sync(src, tmp_path / "dst", tmp_path / "j.jsonl", mode="full", delete=True, no_traverse=True)
    env = {**os.environ, "CI": "true"}
    argv = [sys.executable, "-m", "lepton_cdk.cli", "data", "sync", str(src), str(tmp_path / "dst"), "--json",
            "--journal", str(tmp_path / "cli.jsonl"), "--no-traverse"]
    first = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    second = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0 and json.loads(first.stdout)["objects_copied"] == 43, first.stderr
    assert second.returncode == 0 and json.loads(second.stdout)["objects_copied"] == 0
    assert "looked up 0 destination objects (--no-traverse)" in second.stderr
    refused = subprocess.run([*argv, "--mode", "full", "--delete"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and refused.stderr.strip().splitlines()[-1] == \
        "error: --delete needs the destination listing that --no-traverse skips; drop one of the two"


# -- the engine never touches what it was not asked to ------------------------------------------------------------

@pytest.fixture
def state(tmp_path, monkeypatch) -> Path:
    """A private state folder: locks, the staging registry and journals of this test only."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state"


@pytest.mark.parametrize(("key", "problem"), [
    ("a/b.txt", None), ("ünï cödé/✓.txt", None), (".hidden", None), ("notes.lepton-tmp-mine", None), ("a\\b", None),
    ("", "it is empty"), (".", "it has a '.' segment"), ("..", "it has a '..' segment"), ("a/./b", "it has a '.' segment"),
    ("a/../b", "it has a '..' segment"), ("a//b", "it has an empty segment ('//')"), ("/abs", "it starts with '/'"),
    ("a/", "it ends with '/', which no file name can"), ("a\x00b", "it holds a NUL byte"),
    ("x" * 256, "a segment is longer than 255 bytes"),
])
def test_local_key_problem_names_why_a_key_cannot_be_a_path(key, problem):
    from lepton_cdk.data.stores.local import local_key_problem

    assert local_key_problem(key) == problem


def test_a_look_alike_temporary_name_is_an_ordinary_object_and_only_registered_ones_are_discarded(tmp_path, state):
    dst = write_tree(tmp_path / "dst", {"notes.lepton-tmp-mine": b"user", ".x.lepton-tmp-0123456789abcdef": b"user too"})
    store = LocalStore(dst)
    # a temporary file of lepton's own, as a killed write leaves it: created, registered, never renamed
    leftover = dst / f".big.bin{TMP_MARKER}feedfacefeedface"
    leftover.write_bytes(b"half")
    store.staging.add("feedfacefeedface", leftover.name, os.stat(leftover))
    assert sorted(o.key for o in store.list()) == [".x.lepton-tmp-0123456789abcdef", "notes.lepton-tmp-mine"]
    from lepton_cdk.data.stores import StorageError

    with pytest.raises(StorageError, match="only the holder of the lock"):
        store.discard_partial_writes()
    with store.exclusive():
        assert store.discard_partial_writes() == 1
    assert sorted(tree(dst)) == [".x.lepton-tmp-0123456789abcdef", "notes.lepton-tmp-mine"]
    assert store.staging.entries() == []


def test_a_registered_name_now_holding_another_file_is_left_alone(tmp_path, state):
    dst = tmp_path / "dst"
    dst.mkdir()
    store = LocalStore(dst)
    stale = dst / f".a{TMP_MARKER}0000000000000001"
    stale.write_bytes(b"ours")
    store.staging.add("0000000000000001", stale.name, os.stat(stale))
    stale.rename(tmp_path / "elsewhere")  # the registered inode lives on elsewhere, so the new file gets another
    stale.write_bytes(b"the user's file, same name, another inode")
    with store.exclusive():
        assert store.discard_partial_writes() == 0
    assert stale.read_bytes() == b"the user's file, same name, another inode"


def test_listing_reports_links_and_special_files_instead_of_dropping_them(tmp_path, state):
    src = write_tree(tmp_path / "src", {"a.txt": b"a", "sub/b.txt": b"b"})
    (src / "to-file").symlink_to(src / "a.txt")
    (src / "to-dir").symlink_to(tmp_path)
    os.mkfifo(src / "sub/pipe")
    skipped = []
    keys = [o.key for o in LocalStore(src).list(on_skip=lambda k, r: skipped.append((k, r.split(",")[0].split(";")[0])))]
    assert sorted(keys) == ["a.txt", "sub/b.txt"]
    assert sorted(skipped) == [("sub/pipe", "a named pipe (FIFO)"), ("to-dir", "a symbolic link"),
                               ("to-file", "a symbolic link")]


def test_writes_and_deletes_never_go_through_a_linked_folder(tmp_path, state):
    from lepton_cdk.data.stores import UnwritableKeyError

    outside = write_tree(tmp_path / "outside", {"x.bin": b"keep"})
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "sub").symlink_to(outside)
    store = LocalStore(dst)
    data = b"new bytes"
    with pytest.raises(UnwritableKeyError, match="'sub' there is a symbolic link"):
        store.write("sub/x.bin", iter([data]), len(data), lambda: digest_file_bytes(data))
    with pytest.raises(UnwritableKeyError, match="symbolic link"):
        store.delete("sub/x.bin")
    assert store.head("sub/x.bin") is None
    assert tree(outside) == {"x.bin": b"keep"}


def test_a_link_at_the_final_name_is_replaced_not_written_through(tmp_path, state):
    outside = write_tree(tmp_path / "outside", {"victim.txt": b"keep"})
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "victim.txt").symlink_to(outside / "victim.txt")
    data = b"from the source"
    LocalStore(dst).write("victim.txt", iter([data]), len(data), lambda: digest_file_bytes(data))
    assert not (dst / "victim.txt").is_symlink() and (dst / "victim.txt").read_bytes() == data
    assert (outside / "victim.txt").read_bytes() == b"keep"


def digest_file_bytes(data: bytes):
    from lepton_cdk.contract.checksums import digest_bytes

    return digest_bytes(data)


def test_the_destination_lock_refuses_a_second_holder_naming_the_lock_and_waits_when_asked(tmp_path, state):
    import threading

    from lepton_cdk.data.stores import DestinationBusyError

    first, second = LocalStore(tmp_path / "dst"), LocalStore(tmp_path / "dst")
    with first.exclusive():
        with pytest.raises(DestinationBusyError, match=r"the lock .*\.lock is held \(pid \d+"), second.exclusive():
            pass
        assert first.holds_lock and not second.holds_lock
        waiter_got = []  # the waiter polls for the lock, which is freed when this block ends
        waiter = threading.Thread(target=lambda: waiter_got.append(_hold_once(second)))
        waiter.start()
    waiter.join(timeout=30)
    assert waiter_got == [True]


def _hold_once(store: LocalStore) -> bool:
    with store.exclusive(wait_s=30):
        return store.holds_lock


def test_checksum_mode_repairs_bit_rot_that_kept_its_mtime(src, tmp_path, state):
    dst, journal = tmp_path / "dst", tmp_path / "j.jsonl"
    sync(src, dst, journal)
    victim = dst / "big/blob.bin"
    before = victim.stat()
    rotted = bytearray(victim.read_bytes())
    rotted[4242] ^= 0x10
    victim.write_bytes(bytes(rotted))
    os.utime(victim, ns=(before.st_atime_ns, before.st_mtime_ns))  # bit rot leaves size and mtime as they were
    assert sync(src, dst, journal).copied == []  # size and mtime say unchanged: the journal vouches
    repaired = sync(src, dst, journal, checksum=True)
    assert [r.key for r in repaired.copied] == ["big/blob.bin"] and repaired.skipped == 42
    assert tree(dst) == tree(src)
    assert verify_trees(LocalStore(src), LocalStore(dst)).ok


def test_keys_a_folder_cannot_hold_fail_one_by_one_and_the_rest_is_copied(tmp_path, state):
    from tests.support.memory_store import MemoryStore

    objects = {".": b"1", "..": b"2", "a/./b": b"3", "a//b": b"4", "/abs": b"5", "x": b"6", "x/": b"7", "x/y": b"8",
               "ok/file": b"9", "folder-marker/": b""}
    source, destination = MemoryStore(objects), LocalStore(tmp_path / "dst")
    j = Journal(tmp_path / "j.jsonl", source.uri, destination.uri)
    result = run_sync(build_plan(source, destination, journal=j), j, SyncOptions(workers=2))
    assert not result.ok
    assert {k for k, _ in result.failed} == {".", "..", "a/./b", "a//b", "/abs", "x", "x/"}
    assert "'x/y' needs 'x' to be a folder" in dict(result.failed)["x"]
    assert tree(tmp_path / "dst") == {"ok/file": b"9", "x/y": b"8"}
    assert not list(tmp_path.glob("*.bin")) and sorted(p.name for p in tmp_path.iterdir()) == ["dst", "j.jsonl", "state"]
    # a bucket keeps every key as it is
    other = MemoryStore({}, uri="s3://other/")
    j2 = Journal(tmp_path / "j2.jsonl", source.uri, other.uri)
    copied = run_sync(build_plan(source, other, journal=j2), j2, SyncOptions(workers=2))
    assert copied.ok and other.objects == {k: v for k, v in objects.items() if k != "folder-marker/"}


def test_sync_summary_lists_skipped_entries_per_object(tmp_path, state):
    src = write_tree(tmp_path / "src", {"a.txt": b"a"})
    (src / "link").symlink_to(src / "a.txt")
    result = sync(src, tmp_path / "dst", tmp_path / "j.jsonl")
    assert result.ok and [r.key for r in result.copied] == ["a.txt"]
    assert [(e["side"], e["key"]) for e in result.to_dict()["skipped"]] == [("source", "link")]
