"""Nothing lost: the real `neuron-export` command never deletes what it did not write, never writes
into (or around) the model it reads, cleans what killed exports left, and says "disk full" or
"read-only" in one line with nothing left behind (real tmpfs in a private mount namespace, as root).

Budget: about 1.5 minutes (CLI runs of ~3-5 s; one inductor compile is cut short by SIGKILL).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support import ROOT, run_cli
from neuron_export.artifact.folders import CLOCK_SLACK_S, clean_stale, sibling, writer_alive
from neuron_export.demo import resolve_demo

TINY = ["--model", "demo:tiny-bert", "--backend", "torchscript", "--sequence_length", "16", "--no-cache"]


def one_error_line(result, pattern: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout[-2000:], result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert pattern in lines[0], lines[0]
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def sd_folder(tmp_path) -> Path:
    """A private copy of the tiny Stable Diffusion pipeline (a diffusers model folder)."""
    return shutil.copytree(resolve_demo("demo:tiny-sd"), tmp_path / "sd")


def test_force_never_replaces_the_source_diffusers_folder(sd_folder):
    before = snapshot(sd_folder)
    same = run_cli("export", "-m", str(sd_folder), str(sd_folder), "--backend", "torchscript", "--force")
    one_error_line(same, "not an artifact written by neuron-export")
    other = run_cli("export", *TINY, str(sd_folder), "--force")
    one_error_line(other, "not an artifact written by neuron-export")
    assert snapshot(sd_folder) == before
    assert sorted(p.name for p in sd_folder.parent.iterdir()) == ["sd"]


def test_force_never_deletes_a_project_folder_that_holds_a_manifest(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "manifest.json").write_text(json.dumps({"name": "my web app", "version": 3}))
    (project / "main.py").write_text("print('mine')\n")
    before = snapshot(project)
    one_error_line(run_cli("export", *TINY, str(project), "--force"), "not an artifact written by neuron-export")
    assert snapshot(project) == before


def test_force_never_replaces_a_foreign_manifest_that_looks_valid(tmp_path):
    """A well-formed manifest of another tool (no neuron_export marker) is not ours to delete."""
    ours = tmp_path / "ours"
    assert run_cli("export", *TINY, str(ours)).returncode == 0
    foreign = shutil.copytree(ours, tmp_path / "foreign")
    manifest = json.loads((foreign / "manifest.json").read_text())
    manifest["tool"] = "someone-else 1.0"
    (foreign / "manifest.json").write_text(json.dumps(manifest))
    before = snapshot(foreign)
    one_error_line(run_cli("export", *TINY, str(foreign), "--force"), "not an artifact written by neuron-export")
    assert snapshot(foreign) == before
    assert run_cli("export", *TINY, "--sequence_length", "8", str(ours), "--force").returncode == 0  # ours: replaced


def test_output_never_is_inside_or_around_the_model_folder(tmp_path):
    model = shutil.copytree(resolve_demo("demo:tiny-bert"), tmp_path / "model")
    before = snapshot(model)
    args = ["--backend", "torchscript", "--sequence_length", "16", "--no-cache"]
    one_error_line(run_cli("export", "-m", str(model), str(model / "compiled"), *args), "lies inside the model folder")
    # An artifact of ours that holds the model folder: --force would delete the model with it.
    artifact = tmp_path / "artifact"
    assert run_cli("export", "-m", str(model), str(artifact), *args).returncode == 0
    inner = shutil.copytree(model, artifact / "model")
    one_error_line(run_cli("export", "-m", str(inner), str(artifact), *args, "--force"), "contains the model folder")
    assert snapshot(inner) == before and snapshot(model) == before


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_the_next_export_removes_stale_staging_folders_and_keeps_live_ones(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    dead = out / f".artifact.tmp-{_dead_pid()}-0123abcd"
    dead.mkdir()
    (dead / "model.pt").write_bytes(b"half written")
    trash = out / f".old.trash-{_dead_pid()}-89abcdef"
    trash.mkdir()
    live = sibling(out / "artifact", "tmp")  # this test process: alive, started before the folder
    live.mkdir()
    result = run_cli("export", *TINY, str(out / "artifact"))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(["artifact", live.name])


def test_a_reused_pid_does_not_keep_a_stale_folder():
    """A folder named after a pid that a *later* process now has is stale: that process started after
    the folder last changed (its ctime), so it cannot be the writer."""
    changed = time.time()
    time.sleep(CLOCK_SLACK_S + 1.5)  # and a process start time may read up to 1 s early (boot time in whole seconds)
    later = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert not writer_alive(later.pid, changed)  # started after the folder last changed: not its owner
        assert writer_alive(later.pid, time.time())  # changed after it started: may be its owner, kept
    finally:
        later.kill()
        later.wait()
    assert not writer_alive(later.pid, time.time())  # gone
    assert writer_alive(os.getpid(), changed - 3600)  # this process: always its own


def test_a_killed_export_leaves_a_folder_the_next_one_removes(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    events = tmp_path / "events.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-m", "neuron_export", "export", "--model", "demo:tiny-bert", "--backend", "inductor",
         "--sequence_length", "16", "--no-cache", "--events", str(events), str(out / "artifact")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        deadline = time.monotonic() + 180
        while '"compiling"' not in (events.read_text() if events.exists() else ""):
            assert process.poll() is None and time.monotonic() < deadline, "the export never reached compiling"
            time.sleep(0.1)
        process.send_signal(signal.SIGKILL)  # no chance to clean up
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    [left] = list(out.iterdir())
    assert left.name.startswith(".artifact.tmp-")
    assert clean_stale(out) == [left] and not any(out.iterdir())  # what the next export and the dashboard do


def _unshare_available() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"], capture_output=True)
    return probe.returncode == 0


needs_mount_namespace = pytest.mark.skipif(not _unshare_available(), reason="needs root and unshare for a private tmpfs")


def run_on_tmpfs(tmp_path: Path, options: str, *export_args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Export into OUTPUT on a fresh tmpfs mounted (with `options`) in a private mount namespace;
    returns the result and what the tmpfs holds afterwards."""
    mount = tmp_path / "mnt"
    mount.mkdir()
    python = f"{sys.executable} -m neuron_export export {' '.join(export_args)} {mount}/out"
    script = (f"mount -t tmpfs -o {options} tmpfs {mount} && ({python}); rc=$?; "
              f"echo LEFT: $(ls -A {mount}) >&3; exit $rc")
    process = subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-c", f"exec 3>{tmp_path}/left; {script}"],
                             capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=600)
    left = (tmp_path / "left").read_text().removeprefix("LEFT:").split()
    return process, left


@needs_mount_namespace
def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path):
    # 100 kB: room for the folder and the small files, not for the compiled model (~200 kB).
    result, left = run_on_tmpfs(tmp_path, "size=100k", *TINY)
    one_error_line(result, "the disk is full; nothing was written")
    assert "Traceback" not in result.stdout + result.stderr and "terminate called" not in result.stderr
    assert left == []


@needs_mount_namespace
def test_a_read_only_output_is_one_line(tmp_path):
    result, left = run_on_tmpfs(tmp_path, "ro,size=1m", *TINY)
    one_error_line(result, "read-only file system")
    assert left == []


@needs_mount_namespace
@pytest.mark.slow
def test_a_full_disk_during_an_inductor_package_is_one_line(tmp_path):
    args = ["--model", "demo:tiny-bert", "--backend", "inductor", "--sequence_length", "16", "--no-cache"]
    result, left = run_on_tmpfs(tmp_path, "size=300k", *args)
    one_error_line(result, "the disk is full")
    assert left == []
