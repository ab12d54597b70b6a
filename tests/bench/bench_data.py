"""Benchmark: `lepton data sync` against `aws s3 sync` and `rclone sync` on one moto S3 endpoint.

One moto server on 127.0.0.1 serves all three tools; each syncs the same local
data set (many small objects and a few large ones) into its own bucket, with
its default settings. Measured, in one run: the full copy's wall time; after
1% of the objects change, the re-sync's wall time and the bytes it rewrote
(objects whose ETag or LastModified changed, summed from listings, so every
tool is measured the same way); and, with `--transcode parquet`, the bytes the
sample credit-risk tables take as Parquet against the raw CSV. The re-sync is
also measured for lepton's opt-in ``--no-traverse`` (trusts its journal instead
of listing the destination), on a bucket of its own filled by the same default
full copy; ``aws s3 sync`` has no such mode and ``rclone sync`` ignores its own
``--no-traverse``, so their rows stay the listing re-sync.

awscli comes from PyPI into its own tool environment under build/bench-tools/
(never into the project's environment); rclone is the Debian package,
installed with apt-get when missing. Results go to bench-results/data.json.
Run with ``python -m tests.bench data``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import venv
from datetime import UTC, datetime
from pathlib import Path

from tests.bench.results import machine, write_result
from tests.support.emulators import aws_env, boto3_client, free_port, start_server

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / "build" / "bench-tools"


def ensure_awscli() -> Path:
    """The `aws` executable from a tool venv of its own (created and filled from PyPI on first use)."""
    env_dir = TOOLS / "awscli"
    aws = env_dir / "bin" / "aws"
    if not aws.exists():
        print("installing awscli into build/bench-tools/awscli ...", file=sys.stderr)
        venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
        subprocess.run([str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", "awscli"], check=True)
    return aws


def ensure_rclone() -> str:
    """The `rclone` executable (the Debian package, installed when missing)."""
    found = shutil.which("rclone")
    if found is None:
        print("installing rclone with apt-get ...", file=sys.stderr)
        subprocess.run(["apt-get", "install", "-y", "-q", "rclone"], check=True, capture_output=True)
        found = shutil.which("rclone")
    if found is None:
        raise SystemExit("rclone is not installed and apt-get could not install it")
    return found


def version(argv: list[str]) -> str:
    out = subprocess.run(argv, capture_output=True, text=True)
    return (out.stdout or out.stderr).strip().splitlines()[0]


def make_data(root: Path, small: int, large: int, large_mib: int, seed: int = 7) -> dict[str, int]:
    """Many small objects (1-64 KiB) and a few large ones, random bytes (incompressible, like most data)."""
    rng = random.Random(seed)
    sizes = {}
    for i in range(small):
        size = rng.randint(1024, 64 * 1024)
        path = root / f"small/{i // 100:02d}/part-{i:05d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(size))
        sizes[path.relative_to(root).as_posix()] = size
    for i in range(large):
        path = root / f"large/shard-{i}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(large_mib * 2**20))
        sizes[path.relative_to(root).as_posix()] = large_mib * 2**20
    return sizes


def change_one_percent(root: Path, sizes: dict[str, int], seed: int = 11) -> int:
    """Rewrite 1% of the objects (same size, new bytes); returns the bytes changed."""
    rng = random.Random(seed)
    keys = rng.sample(sorted(sizes), max(1, len(sizes) // 100))
    for key in keys:
        (root / key).write_bytes(rng.randbytes(sizes[key]))
    return sum(sizes[k] for k in keys)


def listing(s3, bucket: str) -> dict[str, tuple[str, str, int]]:
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            out[obj["Key"]] = (obj["ETag"], obj["LastModified"].isoformat(), obj["Size"])
    return out


def rewritten_bytes(before: dict, after: dict) -> tuple[int, int]:
    """Objects (and their bytes) that are new or were rewritten between two listings."""
    changed = [k for k, v in after.items() if before.get(k) is None or before[k][:2] != v[:2]]
    return len(changed), sum(after[k][2] for k in changed)


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=REPO)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return seconds, proc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1000, help="small objects (1-64 KiB)")
    parser.add_argument("--large", type=int, default=3, help="large objects")
    parser.add_argument("--large-mib", type=int, default=24)
    parser.add_argument("--out", type=Path, default=REPO / "bench-results" / "data.json")
    args = parser.parse_args()
    aws, rclone = ensure_awscli(), ensure_rclone()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        port = free_port()
        server = start_server([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              url=f"http://127.0.0.1:{port}", ready_path="/moto-api/", log=tmp / "moto.log")
        try:
            return run(args, tmp, server.url, aws, rclone)
        finally:
            server.stop()


def run(args, tmp: Path, endpoint: str, aws: Path, rclone: str) -> int:
    env = {**os.environ, **aws_env(endpoint), "CI": "true", "XDG_STATE_HOME": str(tmp / "state"),
           "RCLONE_CONFIG_MOTO_TYPE": "s3", "RCLONE_CONFIG_MOTO_PROVIDER": "Other", "RCLONE_CONFIG_MOTO_ENDPOINT": endpoint,
           "RCLONE_CONFIG_MOTO_ACCESS_KEY_ID": "testing", "RCLONE_CONFIG_MOTO_SECRET_ACCESS_KEY": "testing",
           "RCLONE_CONFIG_MOTO_REGION": "us-east-1", "RCLONE_CONFIG_MOTO_FORCE_PATH_STYLE": "true",
           "RCLONE_CONFIG": str(tmp / "rclone.conf")}
    env.pop("AWS_CA_BUNDLE", None)  # plain-HTTP endpoint; rclone's SDK refuses a custom CA bundle with its transport
    src = tmp / "data"
    sizes = make_data(src, args.small, args.large, args.large_mib)
    s3 = boto3_client("s3", endpoint)
    lepton = [sys.executable, "-m", "lepton_cdk.cli", "data", "sync"]
    commands = {
        "lepton": lambda b: [*lepton, str(src), f"s3://{b}/data", "--json", "--journal", str(tmp / "lepton.jsonl")],
        "aws s3 sync": lambda b: [str(aws), "s3", "sync", str(src), f"s3://{b}/data", "--only-show-errors"],
        "rclone sync": lambda b: [rclone, "sync", str(src), f"moto:{b}/data"],
        "lepton --no-traverse": lambda b: [*lepton, str(src), f"s3://{b}/data", "--json", "--journal", str(tmp / "lepton-nt.jsonl")],
    }
    resync_commands = {**commands, "lepton --no-traverse": lambda b: [*commands["lepton --no-traverse"](b), "--no-traverse"]}
    buckets = {"lepton": "bench-lepton", "aws s3 sync": "bench-aws", "rclone sync": "bench-rclone",
               "lepton --no-traverse": "bench-lepton-nt"}
    results: dict[str, dict] = {}
    for name, argv in commands.items():
        bucket = buckets[name]
        s3.create_bucket(Bucket=bucket)
        seconds, proc = timed(argv(bucket), env)
        listed = listing(s3, bucket)
        assert len(listed) == len(sizes), f"{name} copied {len(listed)} of {len(sizes)} objects"
        results[name] = {"full_copy_s": round(seconds, 2), "command": " ".join(argv(bucket)).replace(str(tmp), "$TMP")}
        print(f"{name}: full copy {seconds:.1f}s", file=sys.stderr)
    time.sleep(1.1)  # LastModified has 1 s resolution: make a rewrite visible in the listings
    changed_bytes = change_one_percent(src, sizes)
    for name, argv in resync_commands.items():
        bucket = buckets[name]
        before = listing(s3, bucket)
        seconds, proc = timed(argv(bucket), env)
        objects, moved = rewritten_bytes(before, listing(s3, bucket))
        results[name].update({"resync_s": round(seconds, 2), "resync_objects_rewritten": objects, "resync_bytes_rewritten": moved,
                              "resync_command": " ".join(argv(bucket)).replace(str(tmp), "$TMP")})
        if name.startswith("lepton"):
            results[name]["resync_bytes_sent_reported"] = json.loads(proc.stdout)["bytes_sent"]
        print(f"{name}: re-sync {seconds:.1f}s, {objects} objects / {moved:,} bytes rewritten", file=sys.stderr)

    # --transcode parquet on the sample tables
    from model_pipeline.datasets import write_sample

    tables = tmp / "tables"
    write_sample(tables)
    csv_bytes = sum(p.stat().st_size for p in tables.glob("*.csv"))
    s3.create_bucket(Bucket="bench-transcode")
    seconds, proc = timed([*lepton, str(tables), "s3://bench-transcode/tables", "--transcode", "parquet", "--json",
                           "--journal", str(tmp / "transcode.jsonl")], env)
    sent = json.loads(proc.stdout)["bytes_sent"]

    peers = min(results["aws s3 sync"]["full_copy_s"], results["rclone sync"]["full_copy_s"])
    mine = results["lepton"]
    goals = {
        "full_copy_le_0.8x_faster_peer": {"ratio": round(mine["full_copy_s"] / peers, 3), "met": mine["full_copy_s"] <= 0.8 * peers},
        "resync_moves_exactly_changed_bytes": {"changed_bytes": changed_bytes, "rewritten": mine["resync_bytes_rewritten"],
                                               "met": mine["resync_bytes_rewritten"] == changed_bytes},
        "resync_le_0.5x_aws": {"ratio": round(mine["resync_s"] / results["aws s3 sync"]["resync_s"], 3),
                               "met": mine["resync_s"] <= 0.5 * results["aws s3 sync"]["resync_s"]},
        "resync_le_0.5x_aws_with_no_traverse": {
            "ratio": round(results["lepton --no-traverse"]["resync_s"] / results["aws s3 sync"]["resync_s"], 3),
            "met": results["lepton --no-traverse"]["resync_s"] <= 0.5 * results["aws s3 sync"]["resync_s"]
            and results["lepton --no-traverse"]["resync_bytes_rewritten"] == changed_bytes},
        "transcode_le_0.25x_csv": {"ratio": round(sent / csv_bytes, 3), "met": sent <= 0.25 * csv_bytes},
    }
    result = {
        "benchmark": "data sync: local folder -> moto S3 (one endpoint for all tools), full copy, 1% re-sync, transcode",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "command": "python -m tests.bench data",
        "load_average_at_end": os.getloadavg(),
        "data_set": {"objects": len(sizes), "bytes": sum(sizes.values()), "small_objects": args.small,
                     "large_objects": args.large, "large_object_mib": args.large_mib,
                     "changed_for_resync": {"objects": max(1, len(sizes) // 100), "bytes": changed_bytes}},
        "versions": {"awscli": version([str(aws), "--version"]), "rclone": version([rclone, "version"])},
        "tools": results,
        "transcode": {"tables": sorted(p.name for p in tables.glob("*.csv")), "csv_bytes": csv_bytes, "parquet_bytes_sent": sent,
                      "ratio": round(sent / csv_bytes, 3), "seconds": round(seconds, 2)},
        "goals": goals,
    }
    write_result(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
