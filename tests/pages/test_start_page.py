"""AppTest of the Start here page: the default page; what this host will use, as `neuron-export doctor`
finds it; how long the demos took from the job store; links to the first compile; and a first paint
that imports neither torch nor transformers (they load in the background afterwards)."""

import json
import os
import subprocess
import sys
import textwrap
import time
from urllib.parse import parse_qs

from page_helpers import APP, ROOT, TIMEOUT, no_exception
from streamlit.testing.v1 import AppTest

from neuron_export.doctor import gather
from studio.jobs import EXPORT, JobStatus, JobStore, cli_command

DOCTOR_WAIT_S = 120  # the page's doctor subprocess imports torch: seconds alone, a minute on a loaded host


def open_start() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    no_exception(at)
    return at


def test_start_here_is_the_first_page_and_links_to_the_first_compile(fresh_workspace):
    at = open_start()
    assert [t.value for t in at.title] == ["Start here"]
    links = {(link.proto.page, link.proto.label) for link in at.get("page_link")}
    compile_links = [label for page, label in links if page.endswith("compile")]
    assert len(compile_links) == 2 and any("MiniLM" in label for label in compile_links)
    assert any("Stable Diffusion" in label for label in compile_links)
    assert any("A folder on this host" in m.value and "Hub id" in m.value and "already compiled for Neuron" in m.value
               for m in at.markdown)



def test_a_demo_link_opens_the_compile_form_with_that_demo_chosen(fresh_workspace):
    at = open_start()
    (link,) = [link.proto for link in at.get("page_link") if "Stable Diffusion" in link.proto.label]
    (at.query_params["demo"],) = parse_qs(link.query_string)["demo"]  # what a click on the link carries
    at.switch_page("views/compile.py").run()
    no_exception(at)
    assert at.selectbox(key="demo").value == "demo:tiny-sd"

def test_host_section_says_what_doctor_says(fresh_workspace):
    at = open_start()
    deadline = time.monotonic() + DOCTOR_WAIT_S
    while not any(m.value.startswith(("**CPU**", "**Neuron**", "**Nothing yet**")) for m in at.markdown):
        assert time.monotonic() < deadline, "the host check did not answer"
        time.sleep(1)
        at.run()
    no_exception(at)
    report = gather()  # the engine's own doctor, in this process
    usable = [b for b in report.backends if b.can_compile and b.can_run]
    (headline,) = [m.value for m in at.markdown if m.value.startswith(("**CPU**", "**Neuron**", "**Nothing yet**"))]
    if any(b.is_neuron for b in usable):
        assert headline.startswith("**Neuron**")
    elif usable:
        isa = next(f.value for f in report.facts if f.name == "CPU vector ISA")
        assert headline.startswith("**CPU**") and f"backend {usable[0].name}" in headline and isa in headline
    else:
        assert headline.startswith("**Nothing yet**")
    devices = next(f.value for f in report.facts if f.name == "Neuron devices")
    assert any(devices in c.value for c in at.caption)


def finished_export(store: JobStore, model: str, seconds: float, status: JobStatus = JobStatus.SUCCEEDED) -> None:
    """A finished export job of `model` that ran `seconds` (the dispatcher is not running: nothing executes it)."""
    job = store.submit(EXPORT, cli_command("export", "--model", model, "out"), title=f"Compile {model}")
    store.update(job.id, status=JobStatus.RUNNING, started_at=time.time() - seconds)
    store.finish(job.id, status)


def test_demo_times_come_from_past_jobs_of_this_host(fresh_workspace):
    store = JobStore(fresh_workspace.db_path, fresh_workspace.jobs_dir)
    for seconds in (60, 80, 300):
        finished_export(store, "demo:minilm", seconds)
    finished_export(store, "demo:minilm", 5, JobStatus.FAILED)  # a failed compile is no estimate
    finished_export(store, "demo:tiny-bert", 9)  # not a featured demo
    at = open_start()
    (minilm,) = [m.value for m in at.markdown if m.value.startswith("- `demo:minilm`")]
    assert "1 min 20 s" in minilm and "median of 3 compile(s)" in minilm
    (sd,) = [m.value for m in at.markdown if m.value.startswith("- `demo:tiny-sd`")]
    assert "not compiled on this host yet" in sd


def test_first_paint_imports_no_heavy_library():
    """Only the background warm-up thread may import torch, transformers or diffusers: record who does."""
    script = textwrap.dedent(f"""
        import json, os, sys, tempfile, threading
        os.environ["NEURON_EXPORT_WORKSPACE"] = tempfile.mkdtemp()
        os.environ.pop("NEURON_EXPORT_PASSWORD", None)
        HEAVY = ("torch", "transformers", "diffusers")
        importers = []

        class Recorder:
            def find_spec(self, name, path=None, target=None):
                if name in HEAVY:
                    importers.append((name, threading.current_thread().name))

        from streamlit.testing.v1 import AppTest
        sys.meta_path.insert(0, Recorder())
        at = AppTest.from_file({str(APP)!r}, default_timeout=120).run()
        assert [t.value for t in at.title] == ["Start here"], at.exception
        print(json.dumps(sorted({{thread for _, thread in importers}})))
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    threads = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(threads) <= {"studio-warm-up"}, threads
