"""The data engine never touches what it was not asked to: hostile trees, keys, flags and a concurrent run.

Each case runs ``lepton data ...`` in-process and asserts the exit status and the one-line message; the
``guard`` fixture proves at teardown that nothing outside the working folder changed (the sentinel folder
``outside/`` next to it holds ``victim.txt`` and a user's ``notes.lepton-tmp-mine``, the targets links point
at) and that published files stayed byte-identical. Cloud cases (keys that are not paths) run against moto.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from lepton_cdk.contract.checksums import digest_bytes
from lepton_cdk.data.stores import LocalStore
from lepton_cdk.data.stores.local import TMP_MARKER
from tests.integration import conftest as emulator_fixtures
from tests.support.emulators import aws_env, boto3_client
from tests.support.hostile import Guard, Outcome, run_lepton
from tests.support.trees import tree, write_tree

# the emulators of the integration tests, for the cases where a cloud matters (marked integration)
moto_server, moto, gcs_emulator = emulator_fixtures.moto_server, emulator_fixtures.moto, emulator_fixtures.gcs_emulator


def lepton(*args: str) -> Outcome:
    """``lepton data ARGS``."""
    return run_lepton("data", *args)


def no_error(outcome: Outcome) -> None:
    """A run that must succeed: exit 0 and no error line."""
    assert outcome.code == 0, outcome.stderr
    assert not [ln for ln in outcome.stderr.splitlines() if ln.startswith("error:")], outcome.stderr


@pytest.fixture
def src(guard: Guard) -> Path:
    return write_tree(guard.work / "src", {"a.txt": b"alpha", "sub/b.txt": b"bravo", "sub/deep/c.bin": os.urandom(3000)})


# -- temporary names never collide with user objects ----------------------------------------------------------------

def test_a_destination_file_named_like_a_temporary_file_survives_a_sync(guard, src):
    dst = write_tree(guard.work / "dst", {"notes.lepton-tmp-mine": b"mine", f".a.txt{TMP_MARKER}0123456789abcdef": b"mine too"})
    guard.publish(dst / "notes.lepton-tmp-mine", dst / f".a.txt{TMP_MARKER}0123456789abcdef")
    outcome = lepton("sync", "src", "dst", "--mode", "full")
    no_error(outcome)
    assert set(tree(dst)) == {"a.txt", "sub/b.txt", "sub/deep/c.bin", "notes.lepton-tmp-mine",
                              f".a.txt{TMP_MARKER}0123456789abcdef"}


def test_a_source_file_named_like_a_temporary_file_is_copied_like_any_other(guard, src):
    write_tree(src, {"notes.lepton-tmp-mine": b"n", f"sub/.x{TMP_MARKER}feedfacefeedface": b"x"})
    no_error(lepton("sync", "src", "dst"))
    assert tree(guard.work / "dst") == tree(src)
    no_error(lepton("verify", "src", "dst"))


def test_a_killed_runs_leftover_is_discarded_and_a_look_alike_user_file_is_not(guard, src):
    dst = write_tree(guard.work / "dst", {f".a.txt{TMP_MARKER}1111111111111111": b"the user's"})
    guard.publish(dst / f".a.txt{TMP_MARKER}1111111111111111")
    leftover = dst / f".a.txt{TMP_MARKER}2222222222222222"  # what a run killed mid-write leaves: created and recorded
    leftover.write_bytes(b"half an object")
    LocalStore(dst).staging.add("2222222222222222", leftover.name, os.stat(leftover))
    no_error(lepton("sync", "src", "dst"))
    assert not leftover.exists()
    assert sorted(tree(dst)) == [f".a.txt{TMP_MARKER}1111111111111111", "a.txt", "sub/b.txt", "sub/deep/c.bin"]


# -- skips are reported per object, and verify never calls a skipped tree identical ---------------------------------

def test_links_and_special_files_in_the_source_are_reported_not_silently_dropped(guard, src):
    (src / "to-outside").symlink_to(guard.base / "outside")
    (src / "sub/to-victim").symlink_to(guard.base / "outside/victim.txt")
    os.mkfifo(src / "sub/pipe")  # opening it would hang: it must never be opened
    outcome = lepton("sync", "src", "dst", "--json")
    no_error(outcome)
    skipped = {e["key"]: e["reason"] for e in json.loads(outcome.stdout)["skipped"]}
    assert set(skipped) == {"to-outside", "sub/to-victim", "sub/pipe"}
    assert skipped["sub/pipe"].startswith("a named pipe (FIFO), not a regular file")
    assert skipped["to-outside"].startswith("a symbolic link; links are not followed")
    assert set(tree(guard.work / "dst")) == {"a.txt", "sub/b.txt", "sub/deep/c.bin"}
    text = lepton("sync", "src", "dst")
    no_error(text)
    assert "  skipped (source) sub/to-victim: a symbolic link; links are not followed" in text.stdout


def test_verify_reports_a_skipped_source_entry_as_a_difference(guard, src):
    no_error(lepton("sync", "src", "dst"))
    (src / "sub/to-victim").symlink_to(guard.base / "outside/victim.txt")
    outcome = lepton("verify", "src", "dst")
    assert outcome.code == 1
    assert outcome.error_line == f"error: 1 difference(s) between {src} and {guard.work / 'dst'}"
    assert "  sub/to-victim: skipped at the source, not compared: a symbolic link" in outcome.stdout


# -- nothing is written outside the destination root ----------------------------------------------------------------

def test_a_linked_folder_inside_the_destination_is_never_written_through(guard, src):
    dst = guard.work / "dst"
    dst.mkdir()
    (dst / "sub").symlink_to(guard.base / "outside")  # sub/b.txt would land in outside/
    outcome = lepton("sync", "src", "dst", "--json")
    assert outcome.code == 1
    assert outcome.error_line.startswith("error: 2 object(s) not copied (sub/b.txt: cannot write 'sub/b.txt' in ")
    assert outcome.error_line.endswith("rename or --exclude the keys the destination cannot take, then re-run")
    summary = json.loads(outcome.stdout)
    assert {f["key"] for f in summary["failed"]} == {"sub/b.txt", "sub/deep/c.bin"}
    assert "'sub' there is a symbolic link and lepton writes nothing through it" in summary["failed"][0]["error"]
    assert (dst / "a.txt").read_bytes() == b"alpha" and (dst / "sub").is_symlink()


def test_a_link_at_an_objects_own_name_is_replaced_and_its_target_untouched(guard, src):
    write_tree(src, {"victim.txt": b"the source's victim.txt"})
    dst = guard.work / "dst"
    dst.mkdir()
    (dst / "victim.txt").symlink_to(guard.base / "outside/victim.txt")
    no_error(lepton("sync", "src", "dst"))
    assert not (dst / "victim.txt").is_symlink() and (dst / "victim.txt").read_bytes() == b"the source's victim.txt"


def test_delete_never_follows_or_removes_a_linked_folder_in_the_destination(guard, src):
    dst = write_tree(guard.work / "dst", {"stale.bin": b"old"})
    (dst / "linked").symlink_to(guard.base / "outside")
    outcome = lepton("sync", "src", "dst", "--mode", "full", "--delete", "--max-delete", "100%", "--json")
    no_error(outcome)
    summary = json.loads(outcome.stdout)
    assert summary["objects_deleted"] == 1 and [e["key"] for e in summary["skipped"]] == ["linked"]
    assert (dst / "linked").is_symlink() and not (dst / "stale.bin").exists()


def test_a_file_in_the_way_of_a_folder_fails_only_that_object(guard, src):
    dst = write_tree(guard.work / "dst", {"sub": b"a file where the source has a folder"})
    guard.publish(dst / "sub")
    outcome = lepton("sync", "src", "dst")
    assert outcome.code == 1
    assert "cannot write 'sub/b.txt' in" in outcome.error_line and "'sub' there is a file, so it cannot also be a folder" \
        in outcome.error_line
    assert (dst / "a.txt").read_bytes() == b"alpha"


def test_a_folder_in_the_way_of_a_file_fails_only_that_object(guard, src):
    dst = write_tree(guard.work / "dst", {"a.txt/kept": b"a folder where the source has a file"})
    guard.publish(dst / "a.txt")
    outcome = lepton("sync", "src", "dst")
    assert outcome.code == 1
    assert outcome.error_line.startswith("error: 1 object(s) not copied (a.txt: key 'a.txt' cannot be a file in ")
    assert "'a.txt/kept' needs 'a.txt' to be a folder" in outcome.error_line
    assert tree(dst / "sub") == tree(src / "sub")


def test_two_source_tables_transcoding_to_one_name_fail_instead_of_overwriting(guard):
    src = write_tree(guard.work / "src", {"t.csv": b"x,y\n1,2\n", "t.parquet": b"PAR1 not really"})
    outcome = lepton("sync", "src", "dst", "--transcode", "parquet")
    assert outcome.code == 1
    assert outcome.error_line.startswith("error: 1 object(s) not copied (t.csv: 't.csv' would be written as 't.parquet', "
                                         "which the source also holds")
    assert tree(guard.work / "dst") == {"t.parquet": (src / "t.parquet").read_bytes()}


# -- overlapping locations ------------------------------------------------------------------------------------------

def test_a_destination_inside_the_source_is_refused(guard, src):
    guard.publish(src)
    outcome = lepton("sync", "src", "src/backup")
    assert outcome.code == 1
    assert outcome.error_line == (f"error: the destination {src / 'backup'} is inside the source {src}: a sync would copy "
                                  "its own output; give a destination outside the source")


def test_a_source_inside_the_destination_is_refused_even_with_delete(guard, src):
    guard.publish(src)
    outcome = lepton("sync", "src/sub", "src", "--mode", "full", "--delete", "--max-delete", "100%")
    assert outcome.code == 1
    assert outcome.error_line == (f"error: the source {src / 'sub'} is inside the destination {src}: a sync would write "
                                  "over (and --delete remove) its own input; give a source outside the destination")


def test_a_destination_reached_through_a_link_into_the_source_is_refused(guard, src):
    guard.publish(src)
    (guard.work / "alias").symlink_to(src)
    outcome = lepton("sync", "src", "alias/copy")
    assert outcome.code == 1
    assert outcome.error_line.startswith(f"error: the destination {guard.work / 'alias/copy'} is inside the source {src}")


# -- the deletion guard ---------------------------------------------------------------------------------------------

def test_delete_from_a_source_that_lists_nothing_is_refused_and_nothing_is_deleted(guard):
    (guard.work / "empty").mkdir()
    dst = write_tree(guard.work / "dst", {"a": b"1", "b/c": b"2", "d": b"3"})
    guard.publish(dst)
    outcome = lepton("sync", "empty", "dst", "--mode", "full", "--delete")
    assert outcome.code == 1
    assert outcome.error_line == (f"error: refusing --delete: the source {guard.work / 'empty'} lists no objects, so all 3 "
                                  f"objects at {dst} would be deleted; check SRC (a typo lists nothing), or pass "
                                  "--max-delete 3 to delete them")


def test_delete_beyond_the_default_share_is_refused_naming_the_numbers_and_the_flag(guard, src):
    dst = write_tree(guard.work / "dst", {**tree(src), **{f"old/{i}": b"o" for i in range(4)}})
    guard.publish(dst)
    outcome = lepton("sync", "src", "dst", "--mode", "full", "--delete")
    assert outcome.code == 1
    assert outcome.error_line == (f"error: refusing --delete: it would delete 4 of the 7 objects at {dst} (57%), more than "
                                  "--max-delete 50% allows; check SRC and the filters with `lepton data plan`, or raise the "
                                  "limit (--max-delete 58%)")


def test_raising_the_limit_to_what_the_refusal_names_lets_the_deletions_run(guard, src):
    dst = write_tree(guard.work / "dst", {**tree(src), **{f"old/{i}": b"o" for i in range(4)}})
    outcome = lepton("sync", "src", "dst", "--mode", "full", "--delete", "--max-delete", "58%", "--json")
    no_error(outcome)
    assert json.loads(outcome.stdout)["objects_deleted"] == 4 and tree(dst) == tree(src)


def test_a_count_limit_refuses_one_deletion_too_many(guard, src):
    dst = write_tree(guard.work / "dst", {**tree(src), **{f"old/{i}": b"o" for i in range(3)}})
    guard.publish(dst)
    outcome = lepton("sync", "src", "dst", "--mode", "full", "--delete", "--max-delete", "2")
    assert outcome.code == 1
    assert "it would delete 3 of the 6 objects" in outcome.error_line and "more than --max-delete 2" in outcome.error_line


@pytest.mark.parametrize("value", ["lots", "-3", "150%", "%"])
def test_a_bad_max_delete_is_one_line(guard, src, value):
    outcome = lepton("sync", "src", "dst", "--mode", "full", "--delete", "--max-delete", value)
    assert outcome.code == 1
    assert outcome.error_line == (f"error: --max-delete {value!r}: give a number of objects (e.g. 100) or a share of the "
                                  "destination's objects from 0% to 100% (e.g. 50%)")
    assert not (guard.work / "dst").exists()


def test_max_delete_without_delete_is_refused(guard, src):
    outcome = lepton("sync", "src", "dst", "--max-delete", "10")
    assert outcome.code == 1
    assert outcome.error_line == "error: --max-delete limits what --delete removes; add --delete or drop --max-delete"


def test_plan_shows_the_deletions_first_and_that_a_sync_would_refuse_them(guard, src):
    dst = write_tree(guard.work / "dst", {f"old/{i}": b"o" for i in range(3)})
    guard.publish(dst)
    outcome = lepton("plan", "src", "dst", "--mode", "full", "--delete")
    no_error(outcome)
    lines = outcome.stdout.splitlines()
    assert lines[1].split() == ["delete", "3", "objects", "3", "B", "(--max-delete", "50%)"]
    assert lines[2].startswith("  sync would refuse --delete: it would delete 3 of the 3 objects")
    first_item = next(ln for ln in lines if ln.startswith("  delete ") and "old/" in ln)
    assert lines.index(first_item) < min(i for i, ln in enumerate(lines) if ln.startswith("  copy   sub/"))


# -- one sync per destination ---------------------------------------------------------------------------------------

def test_a_second_sync_fails_naming_the_lock_and_leaves_the_first_runs_temporary_file(guard, src):
    first = LocalStore(guard.work / "dst")
    wrote_some, carry_on = threading.Event(), threading.Event()

    def slow_chunks():
        yield b"first half, "
        wrote_some.set()
        carry_on.wait(timeout=60)
        yield b"second half"

    data = b"first half, second half"
    done = []
    with first.exclusive():  # what a running `lepton data sync` holds
        writer = threading.Thread(target=lambda: done.append(
            first.write("held.bin", slow_chunks(), len(data), lambda: digest_bytes(data))))
        writer.start()
        assert wrote_some.wait(timeout=60)
        [temp] = [p for p in (guard.work / "dst").iterdir() if TMP_MARKER in p.name]
        outcome = lepton("sync", "src", "dst", "--mode", "full")
        assert outcome.code == 1
        lock = first._destination_lock.path
        assert outcome.error_line == (f"error: another sync is writing to {guard.work / 'dst'}: the lock {lock} is held "
                                      f"(pid {os.getpid()}, since {json.loads(lock.read_text())['started']}); wait for it "
                                      "to finish, or pass --lock-wait SECONDS to wait for it")
        assert temp.exists() and sorted(p.name for p in (guard.work / "dst").iterdir()) == [temp.name]
        carry_on.set()
        writer.join(timeout=60)
    assert done and tree(guard.work / "dst") == {"held.bin": data}
    no_error(lepton("sync", "src", "dst"))  # the lock went with its holder


def test_a_second_spelling_of_the_destination_shares_its_lock(guard, src):
    (guard.work / "dst").mkdir()
    (guard.work / "dst-alias").symlink_to(guard.work / "dst")
    with LocalStore(guard.work / "dst").exclusive():
        outcome = lepton("sync", "src", "dst-alias")
    assert outcome.code == 1
    assert outcome.error_line.startswith(f"error: another sync is writing to {guard.work / 'dst-alias'}: the lock ")
    assert list((guard.work / "dst").iterdir()) == []


# -- --checksum -----------------------------------------------------------------------------------------------------

def test_checksum_repairs_bit_rot_that_kept_its_size_and_mtime(guard, src):
    no_error(lepton("sync", "src", "dst"))
    victim = guard.work / "dst/sub/deep/c.bin"
    st = victim.stat()
    rotted = bytearray(victim.read_bytes())
    rotted[1234] ^= 0x01
    victim.write_bytes(bytes(rotted))
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    plain = lepton("sync", "src", "dst", "--json")
    no_error(plain)
    assert json.loads(plain.stdout)["objects_copied"] == 0  # size and mtime cannot see it
    found = lepton("verify", "src", "dst")
    assert found.code == 1 and found.error_line == f"error: 1 difference(s) between {src} and {guard.work / 'dst'}"
    repaired = lepton("sync", "src", "dst", "--checksum", "--json")
    no_error(repaired)
    assert [r["key"] for r in json.loads(repaired.stdout)["failed"]] == []
    assert json.loads(repaired.stdout)["objects_copied"] == 1
    assert tree(guard.work / "dst") == tree(src)
    no_error(lepton("verify", "src", "dst"))


def test_checksum_with_no_traverse_is_refused(guard, src):
    outcome = lepton("sync", "src", "dst", "--checksum", "--no-traverse")
    assert outcome.code == 1
    assert outcome.error_line == ("error: --checksum hashes every destination copy and --no-traverse looks at none; "
                                  "drop one of the two")


# -- a key is a key: only a local destination restricts keys (moto) -------------------------------------------------

HOSTILE_KEYS = {".": b"dot", "..": b"dotdot", "a/./b": b"dot segment", "a//b": b"empty segment", "a/../b": b"up",
                "../escape": b"up and out", "/abs": b"absolute", "x": b"both a file", "x/": b"and a slash key",
                "x/y": b"and a folder", "ok/file.txt": b"plain"}


@pytest.fixture
def bucket(moto, monkeypatch) -> str:
    for key, value in aws_env(moto).items():
        monkeypatch.setenv(key, value)
    s3 = boto3_client("s3", moto)
    s3.create_bucket(Bucket="hostile-keys")
    for key, body in HOSTILE_KEYS.items():
        s3.put_object(Bucket="hostile-keys", Key=key, Body=body)
    s3.put_object(Bucket="hostile-keys", Key="marker/", Body=b"")  # a console folder: not an object
    return "s3://hostile-keys"


@pytest.mark.integration
def test_bucket_keys_that_cannot_be_paths_fail_one_by_one_into_a_local_folder(guard, bucket):
    deep = guard.work / "deep"
    outcome = lepton("sync", bucket, "deep/dst", "--json")
    assert outcome.code == 1
    assert outcome.error_line.startswith("error: 9 object(s) not copied (")
    failed = {f["key"]: f["error"] for f in json.loads(outcome.stdout)["failed"]}
    assert set(failed) == {".", "..", "a/./b", "a//b", "a/../b", "../escape", "/abs", "x", "x/"}
    assert "it has a '..' segment; rename it at the source or leave it out with --exclude" in failed["../escape"]
    assert "'x/y' needs 'x' to be a folder" in failed["x"]
    assert tree(deep) == {"dst/x/y": b"and a folder", "dst/ok/file.txt": b"plain"}  # nothing beside or above dst
    assert not [p for p in guard.work.rglob("*escape*")] and not Path("/abs").exists()


@pytest.mark.integration
def test_a_bucket_to_bucket_copy_keeps_every_key_as_it_is(guard, bucket, moto):
    boto3_client("s3", moto).create_bucket(Bucket="hostile-copy")
    no_error(lepton("sync", bucket, "s3://hostile-copy"))
    listed = boto3_client("s3", moto).list_objects_v2(Bucket="hostile-copy")["Contents"]
    s3 = boto3_client("s3", moto)
    assert {o["Key"]: s3.get_object(Bucket="hostile-copy", Key=o["Key"])["Body"].read() for o in listed} == HOSTILE_KEYS
    no_error(lepton("verify", bucket, "s3://hostile-copy"))


@pytest.mark.integration
def test_a_bucket_to_cloud_storage_copy_keeps_odd_keys_as_they_are(guard, moto, gcs_emulator, monkeypatch):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    for key, value in aws_env(moto).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    # the emulator mangles '.' and '..' segments in its URLs (real Cloud Storage refuses them as names): the rest
    keys = {k: HOSTILE_KEYS[k] for k in ("a/./b", "a//b", "/abs", "x", "x/", "x/y", "ok/file.txt")}
    s3 = boto3_client("s3", moto)
    s3.create_bucket(Bucket="odd-keys")
    for key, body in keys.items():
        s3.put_object(Bucket="odd-keys", Key=key, Body=body)
    client = storage.Client(project="lepton-test", credentials=AnonymousCredentials())
    client.create_bucket("odd-keys-gcs")
    no_error(lepton("sync", "s3://odd-keys", "gs://odd-keys-gcs"))
    assert {b.name: b.size for b in client.list_blobs("odd-keys-gcs")} == {k: len(v) for k, v in keys.items()}
