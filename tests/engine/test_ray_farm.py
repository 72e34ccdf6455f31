"""The Ray executor on the session's local Ray cluster on loopback (tests/conftest.py: stopped at
the end, no stray process, asserted): a tiny SD export whose components ran as separate Ray tasks (Ray's state API)
and whose images equal eager diffusers'; a 3-bucket classifier equal to eager transformers at each
bucket; a sweep of 4 with one failing; an export cancelled mid-way and one whose worker is killed:
nothing half-published.

Marker `ray` (needs requirements-ray.txt), run by .ci/run. Budget: ~4 minutes on 2 busy cores.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import torch
import transformers

from support import ROOT, assert_buckets_equal_transformers, python_path
from test_bucketed_models import source  # noqa: F401 (a fixture: the tiny classifier with O(1) logits)
from test_diffusion import assert_same_images, generate, quiet

from neuron_export import ExportOptions, export, load_artifact
from neuron_export.demo import build_tiny_stable_diffusion
from neuron_export.errors import NeuronExportError

pytestmark = pytest.mark.ray
ray = pytest.importorskip("ray")

from neuron_export.farm.cluster import LOOPBACK_ENV, cluster_processes  # noqa: E402
from neuron_export.farm.executor import RayExecutor  # noqa: E402
from ray.util.state import list_tasks  # noqa: E402

LOOPBACK = ("127.0.0.1", "::ffff:127.0.0.1", "::1")
SD_COMPONENTS = {"text_encoder", "unet", "vae_encoder", "vae_decoder"}


@pytest.fixture
def cluster(ray_cluster):
    """(address, temp dir) of the session's 2-CPU Ray cluster on loopback (tests/conftest.py)."""
    return ray_cluster


def _tasks(predicate, wanted, timeout=30.0):
    """Ray's task records (events arrive a second or two late): poll until `wanted(tasks)` holds."""
    deadline = time.time() + timeout
    while True:
        tasks = [t for t in list_tasks(limit=1000, raise_on_missing_output=False) if predicate(t)]
        if wanted(tasks) or time.time() > deadline:
            return tasks
        time.sleep(0.5)


def _ours(since: set):
    return lambda t: t.name.startswith("neuron_export:") and t.task_id not in since


def _cli(*args, address):
    env = {**os.environ, **LOOPBACK_ENV, "PYTHONPATH": python_path()}
    return subprocess.Popen([sys.executable, "-m", "neuron_export", *args, "--ray_address", address],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)


def _leftovers(parent):
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_cluster_listens_on_loopback_only(cluster):
    import psutil

    processes = cluster_processes(cluster[1])
    assert processes
    addresses = {c.laddr.ip for p in processes for c in _connections(p) if c.status == psutil.CONN_LISTEN}
    assert addresses and addresses <= set(LOOPBACK), addresses


def _connections(process):
    import psutil

    try:
        return process.net_connections(kind="inet")
    except psutil.Error:
        return []


@pytest.fixture(scope="module")
def sd_source(tmp_path_factory):
    return build_tiny_stable_diffusion(tmp_path_factory.mktemp("ray-sd") / "sd")


def test_sd_components_run_as_separate_ray_tasks_and_equal_diffusers(cluster, sd_source, tmp_path):
    from diffusers import StableDiffusionPipeline

    from neuron_export import NeuronStableDiffusionPipeline

    before = {t.task_id for t in list_tasks(limit=1000, raise_on_missing_output=False)}
    output = tmp_path / "sd-compiled"
    run = _cli("export", "--model", str(sd_source), "--backend", "torchscript", "--no-cache", str(output), "--executor", "ray",
               address=cluster[0])
    _, stderr = run.communicate(timeout=600)
    assert run.returncode == 0, stderr
    tasks = _tasks(_ours(before), lambda ts: {t.name.split(":")[1] for t in ts if t.state == "FINISHED"} >= SD_COMPONENTS)
    finished = {t.name.split(":")[1]: t for t in tasks if t.state == "FINISHED"}
    assert set(finished) == SD_COMPONENTS
    assert len({t.task_id for t in finished.values()}) == 4 and run.pid not in {t.worker_pid for t in finished.values()}
    pipe = quiet(NeuronStableDiffusionPipeline.from_pretrained(output))
    eager = quiet(StableDiffusionPipeline.from_pretrained(sd_source))
    assert_same_images(generate(pipe), generate(eager))
    assert _leftovers(tmp_path) == []


def test_three_buckets_compile_as_ray_tasks_and_equal_transformers(cluster, source, tmp_path):
    before = {t.task_id for t in list_tasks(limit=1000, raise_on_missing_output=False)}
    options = ExportOptions(backend="torchscript", sequence_length=(8, 16, 32), use_cache=False)
    events = []
    result = export(str(source), tmp_path / "farm", options, on_event=events.append, executor=RayExecutor())
    assert result.validation_passed is True
    tasks = _tasks(_ours(before), lambda ts: sum(t.state == "FINISHED" for t in ts) >= 4)
    name = result.manifest.component
    assert sorted(t.name.split(":", 1)[1] for t in tasks) == sorted([f"{name}:save", f"{name}[8]", f"{name}[16]", f"{name}[32]"])
    # what the job store shows as steps: the tasks submitted, then the component built, on its node
    farm = [e["message"] for e in events if e.get("stage") == "ray"]
    save = next(t for t in tasks if t.name.endswith(":save"))
    assert farm == ["4 Ray tasks submitted for 1 component(s)", f"{name}: built by a Ray task on node {save.node_id[:12]}"]
    assert_buckets_equal_transformers(result.artifact, source, (8, 16, 32))
    # the buckets, compiled in three processes, still share one copy of the weights
    local = export(str(source), tmp_path / "local", options)
    farm_size, local_size = ((a / "model.pt").stat().st_size for a in (result.artifact, local.artifact))
    assert farm_size < 1.2 * local_size


def test_sweep_of_four_with_one_failing(cluster, source, tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"""exports:
  - {{model: {source}, output: {tmp_path}/s8, backend: torchscript, sequence_length: 8}}
  - {{model: {source}, output: {tmp_path}/s16, backend: torchscript, sequence_length: 16, batch_size: 2}}
  - {{model: {source}, output: {tmp_path}/bad, backend: torchscript, task: image-classification}}
  - {{model: {source}, output: {tmp_path}/b32, backend: torchscript, sequence_length: [16, 32]}}
""")
    run = _cli("sweep", str(plan), "--executor", "ray", address=cluster[0])
    stdout, stderr = run.communicate(timeout=600)
    assert run.returncode == 1, stderr
    rows = {line.split()[0]: line for line in stdout.splitlines() if line[:1].isdigit()}
    assert [("failed" in rows[n]) for n in "1234"] == [False, False, True, False], stdout
    assert "image-classification" in rows["3"] and not (tmp_path / "bad").exists()
    eager = transformers.AutoModelForSequenceClassification.from_pretrained(source).eval()
    ids = torch.randint(5, 90, (2, 16), generator=torch.Generator().manual_seed(0))
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
    model = load_artifact(tmp_path / "s16")
    got = model(**{n: inputs[n] for n in model.manifest.input_names})
    got = got[0] if isinstance(got, (tuple, list)) else next(iter(got.values()))
    with torch.no_grad():
        assert torch.allclose(got, eager(**inputs).logits, atol=1e-4)
    assert _leftovers(tmp_path) == []


def test_cancelled_export_publishes_nothing_and_stops_its_tasks(cluster, sd_source, tmp_path):
    before = {t.task_id for t in list_tasks(limit=1000, raise_on_missing_output=False)}
    output = tmp_path / "cancelled"
    run = _cli("export", "--model", str(sd_source), "--backend", "torchscript", "--no-cache", str(output), "--executor", "ray",
               address=cluster[0])
    running = _tasks(_ours(before), lambda ts: any(t.state == "RUNNING" for t in ts), timeout=120)
    assert any(t.state == "RUNNING" for t in running), running
    run.send_signal(signal.SIGTERM)
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 130 and "interrupted" in stderr, stderr
    assert not output.exists() and _leftovers(tmp_path) == []
    after = _tasks(_ours(before), lambda ts: not any(t.state == "RUNNING" for t in ts))
    assert not any(t.state == "RUNNING" for t in after)


def test_worker_killed_mid_task_is_retried_or_fails_cleanly(cluster, source, tmp_path):
    before = {t.task_id for t in list_tasks(limit=1000, raise_on_missing_output=False)}
    killed = []

    def kill_first_running_worker():
        tasks = _tasks(_ours(before), lambda ts: any(t.state == "RUNNING" and t.worker_pid for t in ts), timeout=120)
        pid = next(t.worker_pid for t in tasks if t.state == "RUNNING" and t.worker_pid)
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    killer = threading.Thread(target=kill_first_running_worker)
    killer.start()
    output = tmp_path / "killed"
    try:
        result = export(str(source), output, ExportOptions(backend="torchscript", sequence_length=(8, 16, 32), use_cache=False),
                        executor=RayExecutor())
    except NeuronExportError as error:
        assert "died" in str(error) and "\n" not in str(error) and not output.exists()
    else:
        assert result.validation_passed is True and (output / "manifest.json").is_file()
        retried = _tasks(_ours(before), lambda ts: any(t.attempt_number > 0 for t in ts))
        assert any(t.attempt_number > 0 for t in retried)  # the killed task ran again
    killer.join(10)
    assert killed
    assert _leftovers(tmp_path) == []


def test_an_interrupted_export_on_its_own_local_cluster_leaves_no_ray_folder(source, tmp_path):
    from neuron_export.farm.cluster import TEMP_PREFIX

    gone = subprocess.Popen(["true"])
    gone.wait()
    stale = Path(tempfile.gettempdir()) / f"{TEMP_PREFIX}{gone.pid}-killed"  # what a command killed with SIGKILL left
    (stale / "session_latest").mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": python_path()}
    env.pop("NEURON_EXPORT_RAY_ADDRESS", None)
    output = tmp_path / "interrupted"
    with open(tmp_path / "stderr.txt", "w") as stderr:
        run = subprocess.Popen([sys.executable, "-m", "neuron_export", "export", "--model", str(source), "--backend", "torchscript",
                                "--sequence_length", "8,16,32", "--no-cache", str(output), "--executor", "ray"],
                               stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=ROOT, env=env)
    lines = []
    for line in run.stdout:  # its own cluster is up and the export's tasks are on it
        lines.append(line)
        if "Ray tasks submitted" in line:
            break
    own = list(Path(tempfile.gettempdir()).glob(f"{TEMP_PREFIX}{run.pid}-*"))
    assert len(own) == 1 and any(p.name() == "raylet" for p in cluster_processes(str(own[0]))), "".join(lines)
    assert not stale.exists()  # swept when the command made its own
    run.send_signal(signal.SIGTERM)
    run.communicate(timeout=120)
    stderr = (tmp_path / "stderr.txt").read_text()
    assert run.returncode == 130 and "interrupted" in stderr, stderr
    deadline = time.time() + 60  # its janitor removes it once the command and its cluster are gone, then exits
    while (own[0].exists() or cluster_processes(str(own[0]))) and time.time() < deadline:
        time.sleep(0.5)
    assert not own[0].exists() and not cluster_processes(str(own[0]))
    assert not output.exists() and _leftovers(tmp_path) == []


def test_inductor_buckets_travel_between_tasks_as_bytes_and_equal_transformers(cluster, source, tmp_path):
    # Each compile task's Inductor files are in a folder of its own, removed when it ends: the saving
    # task builds the package from the bytes shipped to it, as on another node.
    result = export(str(source), tmp_path / "inductor", ExportOptions(backend="inductor", sequence_length=(8, 16), use_cache=False),
                    executor=RayExecutor())
    assert result.validation_passed is True and result.manifest.bucketing.shared_weights
    assert_buckets_equal_transformers(result.artifact, source, (8, 16))
    assert _leftovers(tmp_path) == [] and not list(Path(tempfile.gettempdir()).glob("neuron-export-bucket-*"))
