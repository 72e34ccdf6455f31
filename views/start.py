"""Start here: what the tool does, what this host will use, how long the demos took here, how to get a
real model, and a link to the first compile.

The first page a person sees, so it paints without torch or transformers (seconds to import): the
host check is `neuron-export doctor --json` in a subprocess, shown when it answers, and everything
else comes from the job store and the environment. benchmarks/bench_first_paint.py times it.
"""

from __future__ import annotations

import json
import statistics
import subprocess
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional

import streamlit as st

from neuron_export import read_manifest
from neuron_export.errors import NeuronExportError, first_line
from neuron_export.hub_reach import hub_offline
from studio import ui
from studio.jobs import EXPORT, JobStatus, JobStore, cli_command

FEATURED_DEMOS = ("demo:minilm", "demo:tiny-sd")  # the real sentence embedder and the image generator
DOCTOR_TIMEOUT_S = 120


def run_doctor() -> dict[str, Any]:
    """`neuron-export doctor --json` (exit 1 only means no backend can run here: its JSON still says why)."""
    done = subprocess.run(cli_command("doctor", "--json"), capture_output=True, text=True, timeout=DOCTOR_TIMEOUT_S)
    try:
        return json.loads(done.stdout)
    except ValueError:
        last = done.stderr.strip().splitlines()[-1:] or [f"exit code {done.returncode}, no output"]
        raise NeuronExportError(f"neuron-export doctor failed: {last[0]}") from None


@st.cache_resource(show_spinner=False, ttl=600)
def host_check() -> Future:
    """One doctor run per server (every 10 min at most), in the background: the page never waits for it."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="start-doctor").submit(run_doctor)


def host_summary(report: dict[str, Any]) -> tuple[str, list[str]]:
    """What compiles and runs here in one sentence, and the doctor's facts that back it."""
    facts = {fact["name"]: fact["value"] for fact in report["facts"]}
    usable = [b for b in report["backends"] if b["can_compile"] and b["can_run"]]
    neuron = [b["name"] for b in usable if b["is_neuron"]]
    if neuron:
        headline = (f"**Neuron**: models compile for and run on this host's NeuronCores (backend {neuron[0]}; "
                    f"{facts.get('NeuronCores', facts.get('Neuron devices', ''))}).")
    elif usable:
        headline = (f"**CPU**: no usable Neuron device here, so models compile to portable CPU code (backend "
                    f"{usable[0]['name']}); vector ISA {facts.get('CPU vector ISA', 'unknown')}.")
        if "GPU(s):" in facts.get("CUDA", ""):  # doctor's wording when torch sees a GPU
            headline += " A **GPU** is visible too: choose device cuda on the Compile page to use it."
    else:
        headline = "**Nothing yet**: no backend can both compile and run on this host; the System page says how to fix it."
    details = [f"{name}: {facts[name]}" for name in ("Neuron devices", "torch-neuronx", "CUDA", "torch") if name in facts]
    return headline, details


@st.fragment(run_every=1.0)  # seconds as a number: a "1s" string makes Streamlit import pandas
def waiting_for_host_check() -> None:
    """Polls the background doctor run; the whole page redraws once it has answered."""
    if host_check().done():
        st.rerun()
    st.caption("Checking this host (`neuron-export doctor`)…")


def host_section() -> None:
    st.subheader("What this host will use")
    check = host_check()
    if not check.done():
        waiting_for_host_check()
        return
    try:
        headline, details = host_summary(check.result())
    except (NeuronExportError, subprocess.TimeoutExpired, OSError) as error:
        st.warning(f"Could not check this host: {first_line(error)}. The System page shows the same facts.")
        return
    st.markdown(headline)
    st.caption(" · ".join(details))
    st.page_link("views/system.py", label="Every fact about this host, with fixes", icon=":material/monitor_heart:")


def demo_timings(store: JobStore) -> dict[str, list[tuple[float, Optional[str]]]]:
    """Each featured demo's finished compiles on this host: (seconds, backend) of every succeeded export job."""
    timings: dict[str, list[tuple[float, Optional[str]]]] = {name: [] for name in FEATURED_DEMOS}
    for job in store.list(limit=None, statuses=[JobStatus.SUCCEEDED]):
        demo = next((name for name in FEATURED_DEMOS if job.kind == EXPORT and name in job.argv), None)
        if demo is not None:
            # The job store records the backend used; rows from before it did: the artifact's manifest.
            timings[demo].append((job.elapsed_s, job.backend or artifact_backend(job.artifact)))
    return timings


def artifact_backend(artifact: Optional[str]) -> Optional[str]:
    try:
        return read_manifest(Path(artifact)).backend if artifact else None
    except NeuronExportError:
        return None  # deleted since: the time still counts


def demos_section(store: JobStore) -> None:
    st.subheader("How long the demos take here")
    timings = demo_timings(store)
    for name, runs in timings.items():
        if not runs:
            st.markdown(f"- `{name}`: not compiled on this host yet, so no time to go by.")
            continue
        seconds = statistics.median(s for s, _ in runs)
        backends = sorted({backend for _, backend in runs if backend})
        on = f" on {', '.join(backends)}" if backends else ""
        st.markdown(f"- `{name}`: {ui.fmt_duration(seconds)} to compile and validate{on} "
                    f"(median of {len(runs)} compile(s) here).")
    st.caption("Times of earlier compiles in this workspace's job store; they grow when other work shares the CPU.")


def real_model_section() -> None:
    st.subheader("Using a real model")
    offline = hub_offline()
    hub = ("this host is set offline (HF_HUB_OFFLINE), so use a folder" if offline else
           "the model's config and weights are downloaded when the job runs, so this host must reach huggingface.co")
    st.markdown(
        "- **A folder on this host** with `config.json` and the weights (e.g. a `git clone` or `save_pretrained`), "
        "under the workspace or `$NEURON_EXPORT_MODEL_ROOTS`: Compile page, *Local folder*.\n"
        f"- **A Hugging Face Hub id** such as `distilbert/distilbert-base-uncased-finetuned-sst-2-english`: "
        f"Compile page, *Hugging Face Hub*; {hub}.\n"
        "- **A model already compiled for Neuron** on the Hub (an optimum-neuron export, e.g. "
        "`aws-neuron/bert-base-uncased-finetuned-sst2-neuron`): the Playground's hub field downloads it, nothing to compile."
    )


def main() -> None:
    services = ui.services()
    st.title("Start here")
    st.markdown(
        "This tool **compiles a Hugging Face model ahead of time** for AWS Inferentia2 / Trainium (or, without "
        "Neuron, into portable CPU code), **checks that the compiled model gives the same answers** as the "
        "original, and lets you **try it** in the Playground and **time it** on the Benchmark page. "
        "Nothing needs a terminal: every compile runs as a job you can follow, and leave."
    )
    with st.container(border=True):
        st.markdown("**Your first compile** — the built-in demos need no download:")
        left, right = st.columns(2)
        left.page_link("views/compile.py", label="Compile the MiniLM sentence embedder (real weights)",
                       icon=":material/bolt:", query_params={"demo": FEATURED_DEMOS[0]})
        right.page_link("views/compile.py", label="Compile a tiny Stable Diffusion (random weights)",
                        icon=":material/image:", query_params={"demo": FEATURED_DEMOS[1]})
    host_section()
    demos_section(services.store)
    real_model_section()


main()
