"""`lepton demo` publishes the model, the manifest and cdktf.out together, on any filesystem.

A run that fails anywhere (synth included) or is killed at any point leaves the previous results as they
were, or the next run puts them back; leftovers are recognised by lepton's marker, never by name alone;
one run at a time writes a folder. Demo runs use a tiny pipeline config (these tests are about publishing,
not model quality) and copy one published result per test.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from lepton_cdk.contract import read_manifest
from lepton_cdk.contract.checksums import digest_file
from model_pipeline.pipeline import PipelineConfig
from tests.support.hostile import Guard, run_lepton, snapshot

REPO = Path(__file__).resolve().parents[2]
TINY = {"n_source": 600, "n_target": 300, "epochs_pretrain": 1, "epochs_finetune": 1}

# A `lepton pipeline run` in its own process that stops at a chosen point: SIGKILLed while building
# (after the ONNX export) or between two moves of its publish, or paused after the export until told to go on.
# With CHILD_NO_LOCKS set, its filesystem offers no flock (as some network mounts).
CHILD = r"""
import errno, fcntl, os, signal, sys
from pathlib import Path
import model_pipeline.pipeline as pipeline

if os.environ.get("CHILD_NO_LOCKS"):
    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")
    fcntl.flock = no_locks

mode, out = sys.argv[1], Path(sys.argv[2]).absolute()
real_export, real_replace = pipeline.export_onnx, os.replace

def export_then(*args, **kwargs):
    result = real_export(*args, **kwargs)
    if mode == "kill-while-building":
        os.kill(os.getpid(), signal.SIGKILL)
    if mode == "pause-while-building":
        print("paused", flush=True)
        sys.stdin.readline()
    return result

moved_in = []

def replace_then(src, dst, **kwargs):
    real_replace(src, dst, **kwargs)
    if mode == "kill-mid-publish" and Path(dst).parent == out:
        moved_in.append(dst)
        if len(moved_in) == 2:
            os.kill(os.getpid(), signal.SIGKILL)

pipeline.export_onnx = export_then
os.replace = replace_then
from lepton_cdk.cli import main
sys.exit(main(["pipeline", "run", "--out", str(out)]))
"""


def _tiny_small(real: Callable[..., PipelineConfig]) -> classmethod:
    return classmethod(lambda cls, **overrides: real(**{**TINY, **overrides}))


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One `lepton demo --quick` result (tiny config), published into a fresh folder; tests copy it."""
    out = tmp_path_factory.mktemp("published") / "out"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(REPO)
        mp.setattr(PipelineConfig, "small", _tiny_small(PipelineConfig.small))
        outcome = run_lepton("demo", "--quick", "--out", str(out), "--json")
    assert outcome.code == 0, outcome.stderr
    return out


@pytest.fixture
def tiny_demo(guard: Guard, monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process demo runs with the tiny config, from the repository root (the demo synthesizes its infra app)."""
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(PipelineConfig, "small", _tiny_small(PipelineConfig.small))


@pytest.fixture
def previous(guard: Guard, published: Path) -> Path:
    """A copy of the published result in the working folder: the previous run a hostile step must not damage."""
    out = guard.work / "out"
    shutil.copytree(published, out, symlinks=True)
    return out


def _child(guard: Guard, mode: str, out: Path, *, no_locks: bool = False, **popen: object) -> subprocess.Popen:
    env = {**os.environ, "CI": "true", "LEPTON_PIPELINE_CONFIG": json.dumps(TINY), **({"CHILD_NO_LOCKS": "1"} if no_locks else {})}
    log = (guard.work / f"child-{mode}.log").open("w")
    return subprocess.Popen([sys.executable, "-c", CHILD, mode, str(out)], cwd=guard.work, env=env, stderr=log, text=True, **popen)


def _leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.startswith(".lepton."))


def _assert_stack_matches_manifest(out: Path) -> None:
    """The published stack uploads exactly the published artifacts: every asset path resolves inside cdktf.out."""
    manifest = read_manifest(out, verify=True)
    [stack_dir] = (out / "cdktf.out" / "stacks").iterdir()
    tf = json.loads((stack_dir / "cdk.tf.json").read_text())
    objects = tf["resource"]["aws_s3_object"].values()
    assert sorted(o["source_hash"] for o in objects) == sorted(a.sha256 for a in manifest.artifacts)
    for obj in objects:
        asset = stack_dir / obj["source"]
        assert not Path(obj["source"]).is_absolute() and asset.is_file(), obj["source"]
        assert digest_file(asset).sha256 == obj["source_hash"]


def test_the_published_stack_refers_to_the_published_artifacts_by_relative_path(published):
    # synthesized in the staging folder, then renamed: nothing in cdktf.out may point back at the staging folder
    _assert_stack_matches_manifest(published)
    texts = [p.read_text(errors="replace") for p in (published / "cdktf.out").rglob("*.json")]
    assert texts and not any(".lepton." in t for t in texts)
    assert _leftovers(published) == []


def test_a_failed_synth_leaves_the_previous_model_manifest_and_stack_byte_identical(guard, previous, tiny_demo, monkeypatch):
    import lepton_cdk.demo
    from lepton_cdk.synth import SynthError, synthesize_app

    def failing_synth(**kwargs):
        synthesize_app(**kwargs)  # the stack really is written into the staging folder first
        raise SynthError("synthesizing the aws stack failed: injected after the stack was written")

    monkeypatch.setattr(lepton_cdk.demo, "synthesize_app", failing_synth)
    guard.publish(previous)
    # a new seed: the run trains a different model, and only the synth fails
    outcome = run_lepton("demo", "--quick", "--seed", "11", "--out", str(previous))
    assert outcome.code == 1
    assert "synthesizing the aws stack failed" in outcome.error_line
    assert "✓ Model pipeline" in outcome.stderr, "the new model was built before the synth failed"
    # nothing staged beside the folder either (HOME is the working folder: jsii keeps its cache in ~/.cache)
    assert sorted(p.name for p in guard.work.iterdir() if p.name != ".cache") == ["out"]


def test_a_bad_stack_setting_fails_before_training_and_changes_nothing(guard, previous, tiny_demo):
    guard.publish(previous)
    outcome = run_lepton("demo", "--quick", "--seed", "11", "--out", str(previous), env={"LEPTON_AWS_REGION": "mars-north-1"})
    assert outcome.code == 1
    assert "LEPTON_AWS_REGION='mars-north-1'" in outcome.error_line
    assert "Model pipeline" not in outcome.stderr, "a typo in the stack's settings is found before minutes of training"


def test_a_run_killed_mid_publish_is_undone_by_the_next_run(guard, previous, tiny_demo):
    guard.publish(previous)
    child = _child(guard, "kill-mid-publish", previous)
    assert child.wait(timeout=300) == -9
    # killed between two moves: some new files are in, the manifest is not
    assert not (previous / "manifest.json").exists() and (previous / "data").is_dir()
    (guard.work / "child-kill-mid-publish.log").unlink()

    # the next run puts the previous results back before anything else (then fails on its own bad input)
    missing = guard.work / "missing.csv"
    outcome = run_lepton("demo", "--quick", "--out", str(previous), "--source-data", str(missing), "--target-data", str(missing))
    assert outcome.code == 1 and str(missing) in outcome.error_line
    assert "put back the previous outputs" in outcome.stderr
    assert _leftovers(previous) == []
    _assert_stack_matches_manifest(previous)


def test_a_killed_runs_leftovers_are_removed_and_a_lookalike_user_folder_survives(guard, previous, tiny_demo):
    mine = previous / ".lepton.partial-mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("a user's folder with a leftover's name\n")
    fake = previous / ".lepton.partial-fake0"
    fake.mkdir()
    (fake / ".lepton-run.json").write_text('{"tool": "my-own-tool"}\n')
    (previous / ".lepton.previous-mine").mkdir()
    (previous / ".lepton.previous-mine" / "old.txt").write_text("kept\n")
    guard.publish(previous)

    child = _child(guard, "kill-while-building", previous)
    assert child.wait(timeout=300) == -9
    (guard.work / "child-kill-while-building.log").unlink()
    [left] = [name for name in _leftovers(previous) if name not in {mine.name, fake.name, ".lepton.previous-mine"}]
    assert (previous / left / "model.onnx").is_file(), "killed after the export, with its model staged"

    missing = guard.work / "missing.csv"
    outcome = run_lepton("demo", "--quick", "--out", str(previous), "--source-data", str(missing), "--target-data", str(missing))
    assert outcome.code == 1 and str(missing) in outcome.error_line
    assert f"removed {left}" in outcome.stderr
    assert not (previous / left).exists()
    # teardown: the user's lookalike folders and the previous results are byte-identical


def test_a_second_run_into_the_same_folder_is_refused_while_the_first_is_writing(guard, previous, tiny_demo):
    child = _child(guard, "pause-while-building", previous, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline().strip() == "paused"
        [staging] = _leftovers(previous)
        before = snapshot(previous)
        outcome = run_lepton("demo", "--quick", "--out", str(previous))
        assert outcome.code == 1
        line = outcome.error_line
        assert f"another lepton run (pid {child.pid}) is writing to {previous}" in line and "wait for it to finish" in line
        assert snapshot(previous) == before, "the refused run touched the running run's folder"
        child.stdin.write("go on\n")
        child.stdin.close()
        assert child.wait(timeout=300) == 0, (guard.work / "child-pause-while-building.log").read_text()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    # the first run was not disturbed: it published a complete, verified result and cleaned its staging
    read_manifest(previous, verify=True)
    assert not (previous / staging).exists() and _leftovers(previous) == []


def test_without_file_locks_only_leftovers_of_ended_runs_are_removed(guard, previous, tiny_demo, monkeypatch):
    running = _child(guard, "pause-while-building", previous, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert running.stdout.readline().strip() == "paused"
        [alive] = _leftovers(previous)
        # runs on a filesystem without locks: each must tell a live run's staging folder from a dead one's
        killed = _child(guard, "kill-while-building", previous, no_locks=True)
        assert killed.wait(timeout=300) == -9
        [dead] = [name for name in _leftovers(previous) if name != alive]

        def no_locks(fd: int, operation: int) -> None:
            raise OSError(errno.ENOLCK, "No locks available")

        with monkeypatch.context() as mp:
            mp.setattr(fcntl, "flock", no_locks)
            missing = guard.work / "missing.csv"
            outcome = run_lepton("demo", "--quick", "--out", str(previous), "--source-data", str(missing), "--target-data", str(missing))
        assert outcome.code == 1 and str(missing) in outcome.error_line
        assert not (previous / dead).exists(), "its process is gone: a leftover"
        assert (previous / alive / "model.onnx").is_file(), "its process still runs: not a leftover"
        running.stdin.write("go on\n")
        running.stdin.close()
        assert running.wait(timeout=300) == 0, (guard.work / "child-pause-while-building.log").read_text()
    finally:
        if running.poll() is None:
            running.kill()
            running.wait()
    read_manifest(previous, verify=True)
    assert _leftovers(previous) == []


def _moves_refused(refuse: Callable[[Path, Path], OSError | None], monkeypatch: pytest.MonkeyPatch) -> list[tuple[Path, Path]]:
    """Make os.replace/os.rename raise ``refuse(src, dst)`` where it returns an error; returns the refused moves."""
    refused: list[tuple[Path, Path]] = []

    def wrap(real: Callable[..., None]) -> Callable[..., None]:
        def move(src, dst, **kwargs):
            error = refuse(Path(os.path.abspath(src)), Path(os.path.abspath(dst)))
            if error is not None:
                refused.append((Path(src), Path(dst)))
                raise error
            return real(src, dst, **kwargs)
        return move

    monkeypatch.setattr(os, "replace", wrap(os.replace))
    monkeypatch.setattr(os, "rename", wrap(os.rename))
    return refused


def test_publishing_copies_when_a_rename_crosses_filesystems(guard, previous, tiny_demo, monkeypatch):
    with monkeypatch.context() as mp:
        refused = _moves_refused(
            lambda src, dst: OSError(errno.EXDEV, "Invalid cross-device link") if src.parent != dst.parent else None, mp)
        outcome = run_lepton("demo", "--quick", "--seed", "11", "--out", str(previous))
    assert outcome.code == 0, outcome.stderr
    assert refused, "every move between folders was refused, so publishing had to copy"
    assert read_manifest(previous, verify=True).lineage.seed == 11
    _assert_stack_matches_manifest(previous)
    assert _leftovers(previous) == []


def test_an_output_folder_that_is_a_mount_point_is_published_in_place(guard, published, tiny_demo, monkeypatch):
    parent = guard.work / "mnt"
    parent.mkdir()
    out = parent / "out"
    shutil.copytree(published, out, symlinks=True)

    def across_the_mount(src: Path, dst: Path) -> OSError | None:
        if out in (src, dst):
            return OSError(errno.EBUSY, "Device or resource busy")  # a mount point cannot be renamed
        if (out in src.parents) != (out in dst.parents):
            return OSError(errno.EXDEV, "Invalid cross-device link")
        return None

    parent.chmod(0o555)  # as root this stops nothing, so the listing below is the proof
    try:
        with monkeypatch.context() as mp:
            _moves_refused(across_the_mount, mp)
            outcome = run_lepton("demo", "--quick", "--seed", "11", "--out", str(out))
    finally:
        parent.chmod(0o755)
    assert outcome.code == 0, outcome.stderr
    assert [p.name for p in parent.iterdir()] == ["out"], "nothing may be staged beside a mount point"
    assert read_manifest(out, verify=True).lineage.seed == 11
    _assert_stack_matches_manifest(out)
    assert _leftovers(out) == []


@pytest.mark.parametrize(("where", "message"), [
    ("notes.txt/out", "cannot be created: {work}/notes.txt is a file"),
    ("notes.txt", "{work}/notes.txt exists and is not a folder"),
])
def test_an_output_path_that_is_or_lies_under_a_file_is_one_clear_line(guard, tiny_demo, where, message):
    notes = guard.work / "notes.txt"
    notes.write_text("my notes\n")
    before = snapshot(guard.work)
    outcome = run_lepton("demo", "--quick", "--out", str(guard.work / where))
    assert outcome.code == 1
    assert message.format(work=guard.work) in outcome.error_line
    assert snapshot(guard.work) == before, "nothing is created for an output path that can never be a folder"


def test_a_folder_holding_someone_elses_cdktf_out_is_refused(guard, tiny_demo):
    out = guard.work / "project"
    (out / "cdktf.out").mkdir(parents=True)
    (out / "cdktf.out" / "manifest.json").write_text("{}\n")
    guard.publish(out)
    outcome = run_lepton("demo", "--quick", "--out", str(out))
    assert outcome.code == 1
    assert "holds cdktf.out but no manifest.json" in outcome.error_line
    assert _leftovers(out) == []

