"""`lepton data` against real S3 and Cloud Storage APIs: moto server and gcp-storage-emulator on 127.0.0.1.

Objects go local -> S3 -> GCS -> S3 and GCS -> local, with a zero-byte object,
keys with spaces and Unicode and a 20 MiB object that uploads in parts;
re-runs move nothing, a change moves exactly that object, filters and
``--delete`` do what they say, 5xx/throttling answers (from a flaky proxy in
front of moto) are retried, and setup mistakes get one clear line.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import pytest

from lepton_cdk.data import Journal, SyncOptions, build_plan, run_sync, verify_trees
from lepton_cdk.data.stores import open_store
from tests.support.emulators import aws_env, boto3_client
from tests.support.trees import tree, write_tree

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PART = 5 * 2**20  # S3's smallest part size: a 20 MiB object goes up in 4 parts
LARGE = 20 * 2**20 + 12345


@pytest.fixture(scope="module")
def data_tree(tmp_path_factory) -> Path:
    files = {f"small/{i:02d}.json": json.dumps({"row": i, "pad": "x" * i}).encode() for i in range(24)}
    files.update({"zero.bin": b"", "with space/naïve ✓ 日本.txt": "ünïcödé".encode(), "large/blob.bin": os.urandom(LARGE)})
    return write_tree(tmp_path_factory.mktemp("data") / "src", files)


@pytest.fixture
def clouds(moto, gcs_emulator, monkeypatch, tmp_path) -> str:
    """AWS settings pointing at moto, STORAGE_EMULATOR_HOST at the GCS emulator; yields the moto URL."""
    for key, value in aws_env(moto).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return moto


def s3_bucket(endpoint: str) -> str:
    name = f"src-{uuid.uuid4().hex[:10]}"
    boto3_client("s3", endpoint).create_bucket(Bucket=name)
    return name


def gcs_bucket() -> str:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    name = f"dst-{uuid.uuid4().hex[:10]}"
    storage.Client(project="lepton-test", credentials=AnonymousCredentials()).create_bucket(name)
    return name


def sync(src: str, dst: str, journal: Path, *, endpoint: str | None = None, mode: str = "incremental", workers: int = 4, **kw):
    cloud = ("s3://", "gs://")
    source = open_store(src, endpoint if src.startswith(cloud) else None)
    destination = open_store(dst, endpoint if dst.startswith(cloud) else None)
    for store in (source, destination):
        store.part_size, store.multipart_threshold = PART, 8 * 2**20
    j = Journal(journal, source.uri, destination.uri)
    plan = build_plan(source, destination, mode=mode, journal=j, **kw)
    return run_sync(plan, j, SyncOptions(workers=workers, backoff_s=0.05, manifest_path=journal.with_suffix(".manifest.json")))


def test_data_goes_local_s3_gcs_s3_local_intact_and_verified(clouds, data_tree, tmp_path):
    a, g, b = s3_bucket(clouds), gcs_bucket(), s3_bucket(clouds)
    hops = [(str(data_tree), f"s3://{a}/data"), (f"s3://{a}/data", f"gs://{g}/copy"), (f"gs://{g}/copy", f"s3://{b}/back"),
            (f"gs://{g}/copy", str(tmp_path / "out"))]
    for i, (src, dst) in enumerate(hops):
        result = sync(src, dst, tmp_path / f"hop{i}.jsonl")
        assert result.ok, (src, dst, result.failed)
        assert len(result.copied) == 27 and result.bytes_sent == sum(len(v) for v in tree(data_tree).values())
        by_key = {r.key: r for r in result.copied}
        assert by_key["zero.bin"].bytes == 0
        if dst.startswith("s3://"):
            assert by_key["large/blob.bin"].verified_by == "s3 composite ChecksumSHA256"  # went up in parts
            assert by_key["zero.bin"].verified_by == "s3 ChecksumSHA256"
        elif dst.startswith("gs://"):
            assert {r.verified_by for r in result.copied} == {"gcs crc32c"}
        else:
            assert {r.verified_by for r in result.copied} == {"read-back sha256"}
    assert tree(tmp_path / "out") == tree(data_tree)
    head = boto3_client("s3", clouds).head_object(Bucket=a, Key="data/large/blob.bin")
    assert head["ETag"].strip('"').endswith("-5")  # multipart: 4 full parts and a tail
    report = verify_trees(open_store(f"gs://{g}/copy"), open_store(f"s3://{b}/back"))
    assert report.ok and report.checked == 27


def test_rerun_moves_nothing_and_a_change_moves_exactly_that_object(clouds, data_tree, tmp_path):
    src = write_tree(tmp_path / "src", tree(data_tree))
    a, g = s3_bucket(clouds), gcs_bucket()
    assert sync(str(src), f"s3://{a}/d", tmp_path / "j1.jsonl").ok
    assert sync(f"s3://{a}/d", f"gs://{g}/d", tmp_path / "j2.jsonl").ok
    again = sync(str(src), f"s3://{a}/d", tmp_path / "j1.jsonl")
    assert again.copied == [] and again.bytes_sent == 0 and again.skipped == 27
    assert sync(f"s3://{a}/d", f"gs://{g}/d", tmp_path / "j2.jsonl").bytes_sent == 0
    (src / "small/05.json").write_bytes(b'{"row": 5, "changed": true}')
    first = sync(str(src), f"s3://{a}/d", tmp_path / "j1.jsonl")
    second = sync(f"s3://{a}/d", f"gs://{g}/d", tmp_path / "j2.jsonl")
    for result in (first, second):
        assert [r.key for r in result.copied] == ["small/05.json"] and result.bytes_sent == 27
    # a journal lost: single-part objects are still recognised from the checksums both clouds keep; S3 keeps no
    # whole-object hash of a multipart object (only a composite of its parts), so that one is copied again
    fresh = sync(f"s3://{a}/d", f"gs://{g}/d", tmp_path / "new-journal.jsonl")
    assert [r.key for r in fresh.copied] == ["large/blob.bin"] and fresh.skipped == 26


def test_no_traverse_rerun_against_s3_moves_exactly_the_change_without_listing(clouds, data_tree, tmp_path):
    src = write_tree(tmp_path / "src", tree(data_tree))
    a = s3_bucket(clouds)
    assert sync(str(src), f"s3://{a}/d", tmp_path / "j.jsonl").ok
    again = sync(str(src), f"s3://{a}/d", tmp_path / "j.jsonl", no_traverse=True)
    assert again.copied == [] and again.skipped == 27
    (src / "small/05.json").write_bytes(b'{"row": 5, "changed": true}')
    changed = sync(str(src), f"s3://{a}/d", tmp_path / "j.jsonl", no_traverse=True)
    assert [r.key for r in changed.copied] == ["small/05.json"] and changed.bytes_sent == 27
    # without a journal every object is looked up by HEAD: the single-part ones match by the sha256 S3 holds; the
    # multipart one has only a composite of its parts, so (as with a listing) it is copied again
    fresh = sync(str(src), f"s3://{a}/d", tmp_path / "fresh.jsonl", no_traverse=True)
    assert [r.key for r in fresh.copied] == ["large/blob.bin"] and fresh.skipped == 26
    assert verify_trees(open_store(str(src)), open_store(f"s3://{a}/d")).ok


def test_partial_filters_and_full_with_and_without_delete(clouds, data_tree, tmp_path):
    a, g = s3_bucket(clouds), gcs_bucket()
    assert sync(str(data_tree), f"s3://{a}/d", tmp_path / "j0.jsonl", include=("small/**",)).ok
    partial = sync(f"s3://{a}/d", f"gs://{g}/d", tmp_path / "j1.jsonl", mode="partial", include=("small/0*",),
                   exclude=("small/09.json",))
    assert sorted(r.key for r in partial.copied) == [f"small/0{i}.json" for i in range(9)]
    dst = open_store(f"gs://{g}/d")
    extra = boto3_client("s3", clouds)
    extra.put_object(Bucket=a, Key="d/ignored.txt", Body=b"")  # in the source, outside the next filters
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    storage.Client(project="p", credentials=AnonymousCredentials()).bucket(g).blob("d/stale.bin").upload_from_string(b"old")
    kept = sync(f"s3://{a}/d", f"gs://{g}/d", tmp_path / "j2.jsonl", mode="full", include=("small/**", "stale.bin"))
    assert kept.ok and len(kept.copied) == 24 and kept.deleted == []
    assert "stale.bin" in {o.key for o in dst.list()}
    removed = sync(f"s3://{a}/d", f"gs://{g}/d", tmp_path / "j2.jsonl", mode="full", include=("small/**", "stale.bin"),
                   delete=True)
    assert removed.deleted == ["stale.bin"]
    assert {o.key for o in dst.list()} == {f"small/{i:02d}.json" for i in range(24)}


class FlakyS3Proxy:
    """An HTTP proxy in front of moto that answers every third request for an object with 503 SlowDown or 500 InternalError."""

    def __init__(self, upstream: str) -> None:
        target = urlparse(upstream)
        self.injected = 0
        self.requests = 0
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    outer.requests += 1
                    fail = self.path.count("/") >= 2 and outer.requests % 3 == 0  # object requests, not bucket ones
                    if fail:
                        outer.injected += 1
                        code = 503 if outer.injected % 2 else 500
                if fail:
                    err = b"SlowDown" if code == 503 else b"InternalError"
                    payload = b"<?xml version='1.0'?><Error><Code>" + err + b"</Code><Message>injected</Message></Error>"
                    self.send_response(code)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection",)}
                conn.request(self.command, self.path, body=body if body else None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # clients dropping idle keep-alive connections are not news

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_5xx_and_throttling_are_retried_and_the_copy_survives(clouds, data_tree, tmp_path):
    a = s3_bucket(clouds)
    proxy = FlakyS3Proxy(clouds)
    try:
        result = sync(str(data_tree), f"s3://{a}/d", tmp_path / "j.jsonl", endpoint=proxy.url, include=("small/1[0-5]*", "large/**"))
        back = sync(f"s3://{a}/d", str(tmp_path / "back"), tmp_path / "j2.jsonl", endpoint=proxy.url)
    finally:
        proxy.close()
    assert result.ok and back.ok, (result.failed, back.failed)
    assert proxy.injected >= 6  # every third object request failed, and each was retried
    assert len(result.copied) == 7
    assert tree(tmp_path / "back") == {k: v for k, v in tree(data_tree).items()
                                       if k.startswith(("small/10", "small/11", "small/12", "small/13", "small/14", "small/15", "large/"))}


def lepton(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lepton_cdk.cli", "data", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "CI": "true", **env})


def test_cli_sync_verify_and_a_corrupted_object_is_caught(clouds, data_tree, tmp_path):
    a = s3_bucket(clouds)
    env = {"XDG_STATE_HOME": str(tmp_path / "state")}
    proc = lepton("sync", str(data_tree), f"s3://{a}/d", "--exclude", "large/**", "--json", "--endpoint", clouds, env=env)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["objects_copied"] == 26 and summary["verified_by"] == ["s3 ChecksumSHA256"]
    assert "objects" in proc.stderr  # progress lines under CI
    s3 = boto3_client("s3", clouds)
    body = bytearray(s3.get_object(Bucket=a, Key="d/small/10.json")["Body"].read())
    body[3] ^= 0x20  # one byte, same size: only a hash can tell
    s3.put_object(Bucket=a, Key="d/small/10.json", Body=bytes(body))
    proc = lepton("verify", str(data_tree), f"s3://{a}/d", "--manifest", summary["manifest"], env=env)
    assert proc.returncode == 1
    assert "small/10.json: destination: content differs from the manifest (sha256)" in proc.stdout
    assert "large/blob.bin" not in proc.stdout  # excluded from the sync, so not in its manifest


def test_missing_bucket_and_missing_credentials_get_one_clear_line(clouds, data_tree, tmp_path):
    env = {"XDG_STATE_HOME": str(tmp_path / "state")}
    proc = lepton("sync", str(data_tree), "s3://no-such-bucket-here/x", env=env)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: bucket 'no-such-bucket-here' does not exist at {clouds}; create it (e.g. with the ModelBucket construct) or fix the URI")
    proc = lepton("plan", "gs://no-such-bucket-here/x", str(tmp_path / "out"), env=env)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1].startswith("error: bucket 'no-such-bucket-here' does not exist")
    proc = lepton("plan", str(data_tree), "s3://some-bucket/x", env={**env, "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""})
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: no AWS credentials for s3://some-bucket/x/; set AWS_ACCESS_KEY_ID and " \
                                  "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run where an instance role is attached"


KILL_MID_MULTIPART = """
import os, signal, sys
import lepton_cdk.data.stores.s3 as s3mod
from lepton_cdk.data.stores import open_store
from lepton_cdk.data import Journal, SyncOptions, build_plan, run_sync

src, dst, journal = sys.argv[1:4]
sent = [0]
real = s3mod.S3Store._call
def call(self, what, fn, **kw):
    out = real(self, what, fn, **kw)
    if what.startswith("upload part"):
        sent[0] += 1
        if sent[0] == 2:  # two of the five parts are in S3: die before the upload is completed
            os.kill(os.getpid(), signal.SIGKILL)
    return out
s3mod.S3Store._call = call
s, d = open_store(src), open_store(dst)
d.part_size, d.multipart_threshold = 5 * 2**20, 8 * 2**20
j = Journal(journal, s.uri, d.uri)
run_sync(build_plan(s, d, mode="full", journal=j), j, SyncOptions(workers=1))
"""


def test_a_sync_killed_mid_multipart_leaves_nothing_visible_and_resumes(clouds, data_tree, tmp_path):
    a = s3_bucket(clouds)
    journal = tmp_path / "j.jsonl"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    killed = subprocess.run([sys.executable, "-c", KILL_MID_MULTIPART, str(data_tree), f"s3://{a}/d", str(journal)],
                            env=env, capture_output=True, text=True, timeout=60)
    assert killed.returncode == -9, killed.stderr
    s3 = boto3_client("s3", clouds)
    assert s3.list_objects_v2(Bucket=a).get("KeyCount") == 0  # the half-sent object is not under its key
    assert [u["Key"] for u in s3.list_multipart_uploads(Bucket=a).get("Uploads", [])] == ["d/large/blob.bin"]
    proc = lepton("sync", str(data_tree), f"s3://{a}/d", "--mode", "full", "--journal", str(journal), "--json",
                  "--part-size-mib", "5", "--multipart-threshold-mib", "8", env={})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["objects_copied"] == 27
    assert verify_trees(open_store(str(data_tree)), open_store(f"s3://{a}/d")).ok


def test_cloud_storage_5xx_answers_are_retried_and_the_copy_survives(clouds, data_tree, tmp_path, gcs_emulator):
    g = gcs_bucket()
    proxy = FlakyS3Proxy(gcs_emulator)  # any HTTP API: every third request for an object answers 503 or 500
    try:
        up = sync(str(data_tree), f"gs://{g}/d", tmp_path / "j.jsonl", endpoint=proxy.url, include=("small/2*", "zero.bin"))
        source, destination = open_store(f"gs://{g}/d", proxy.url), open_store(str(tmp_path / "back"))
        j = Journal(tmp_path / "j2.jsonl", source.uri, destination.uri)
        down = run_sync(build_plan(source, destination, journal=j), j, SyncOptions(workers=4, backoff_s=0.05))
    finally:
        proxy.close()
    assert up.ok and down.ok, (up.failed, down.failed)
    assert proxy.injected >= 3 and len(up.copied) == 5
    assert tree(tmp_path / "back") == {k: v for k, v in tree(data_tree).items() if k.startswith(("small/2", "zero.bin"))}
