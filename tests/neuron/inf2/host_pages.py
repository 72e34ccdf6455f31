"""The dashboard on an inf2 host (AppTest): Compile with `auto` -> a real job compiles for the NeuronCores ->
Jobs -> Validation report -> Playground, whose answer matches transformers; Stable Diffusion in the
Playground with its UNet on two NeuronCores; an optimum-neuron folder in the workspace; the System page's
doctor and NeuronCore tables; Start here says the host uses Neuron. Budget: ~90 s."""

import json
import sys
import time
from pathlib import Path

import pytest
import streamlit as st
import torch
import transformers
from streamlit.testing.v1 import AppTest

from neuron_export import ExportOptions, export
from neuron_export.demo import resolve_demo
from studio.jobs import JobStore
from studio.workspace import Workspace

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "pages"))
from page_helpers import APP, no_exception, open_page, submit, wait_for_job  # noqa: E402

TEXT = "Hamilton is considered to be the best musical of human history."


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("inf2-workspace")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NEURON_EXPORT_WORKSPACE", str(root))
        patch.delenv("NEURON_EXPORT_PASSWORD", raising=False)
        st.cache_resource.clear()
        st.cache_data.clear()
        yield Workspace(root)
        st.cache_resource.clear()


def test_start_here_says_this_host_uses_neuron(workspace):
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    no_exception(at)
    deadline = time.monotonic() + 120  # the page's `neuron-export doctor` subprocess
    while not (headlines := [m.value for m in at.markdown if m.value.startswith(("**Neuron**", "**CPU**", "**Nothing"))]):
        assert time.monotonic() < deadline, "the host check did not answer"
        time.sleep(1)
        at.run()
    assert headlines[0].startswith("**Neuron**: models compile for and run on this host's NeuronCores (backend neuron")


def test_compile_jobs_report_playground_on_the_neuroncores(workspace):
    at = AppTest.from_file(str(APP), default_timeout=120).run().switch_page("views/compile.py").run()
    assert any("auto will use **neuron** (Neuron): torch-neuronx and a Neuron device are present" in c.value for c in at.caption), [c.value for c in at.caption]
    at.selectbox(key="demo").set_value("demo:tiny-bert").run()
    # Named by what auto resolves to here: the neuron backend, for this host's inf2 NeuronCores.
    assert at.text_input(key="artifact_name").value == "tiny-bert-text-classification-neuron-inf2"
    at.number_input(key="shape-sequence_length-demo:tiny-bert").set_value(16)
    at.text_input(key="artifact_name").set_value("bert-inf2")
    at.run()
    next(b for b in at.button if b.label == "Compile").click()
    at.run()
    assert not at.error, [e.value for e in at.error]
    store = JobStore(workspace.db_path, workspace.jobs_dir)
    (job,) = store.list()
    assert job.title == "bert-inf2 (text-classification, neuron)"
    job = wait_for_job(store, job.id, timeout=240)
    assert str(job.status) == "succeeded" and job.validation_passed is True, store.log_tail(job.id)
    manifest = json.loads((workspace.artifacts_dir / "bert-inf2" / "manifest.json").read_text())
    assert (manifest["backend"], manifest["target"], manifest["neuron_cores"]) == ("neuron", "inf2", [0])

    at.switch_page("views/jobs.py").run()
    no_exception(at)
    assert list(at.dataframe[0].value["status"]) == ["succeeded"]
    at.query_params["artifact"] = "bert-inf2"
    at.switch_page("views/report.py").run()
    no_exception(at)
    assert any("badge" in m.value and "Neuron · inf2" in m.value for m in at.markdown)  # never "not Neuron"
    assert not any("not Neuron" in m.value for m in at.markdown)
    outputs = at.dataframe[-1].value
    assert "logits" in outputs.to_string() and "✓" in outputs.to_string()

    at = open_page("playground.py", "bert-inf2")
    at.text_area[0].set_value(TEXT)
    at = submit(at, "Classify")
    no_exception(at)
    assert not at.error, [e.value for e in at.error]
    folder = resolve_demo("demo:tiny-bert")
    with torch.no_grad():
        logits = transformers.AutoModelForSequenceClassification.from_pretrained(folder).eval()(
            **transformers.AutoTokenizer.from_pretrained(folder)(TEXT, return_tensors="pt")).logits[0]
    metrics = {m.label: m for m in at.metric}
    assert metrics["Label"].value == ["NEGATIVE", "POSITIVE"][int(logits.argmax())]
    assert metrics["Compiled (neuron)"].value.endswith("ms")
    assert any("NeuronCores — **text-classification** on core 0" in c.value for c in at.caption)


def test_stable_diffusion_playground_and_system_page(workspace):
    export("demo:tiny-sd", workspace.artifacts_dir / "sd-inf2", ExportOptions(disable_validation=True))
    at = open_page("playground.py", "sd-inf2")
    at.slider[0].set_value(2)
    at = submit(at, "Generate")
    no_exception(at)
    assert not at.error, [e.value for e in at.error]
    # 3 images: the compiled one, eager diffusers' beside it, and the gallery's copy
    assert len(at.get("image")) == 3 and {m.label for m in at.metric} >= {"Compiled (neuron)", "Eager PyTorch"}
    assert any("**unet** on cores 0 and 1 (a copy on each: the CFG halves side by side)" in c.value for c in at.caption)

    at = open_page("system.py")
    no_exception(at)
    placements = next(d for d in at.dataframe if "Component" in d.value.columns).value
    unet = placements[(placements["Artifact"] == "sd-inf2") & (placements["Component"] == "unet")].iloc[0]
    assert unet["NeuronCores"] == "0, 1" and unet["Copies"] == 2
    backends = next(d for d in at.dataframe if "Backend" in d.value.columns).value.set_index("Backend")
    assert backends.loc["neuron", "Compiles here"] == "yes" and backends.loc["neuron", "Runs here"] == "yes"
    cores = next(d for d in at.dataframe if "NeuronCore" in d.value.columns).value  # from neuron-ls
    assert list(cores["NeuronCore"]) == [0, 1]


def test_an_optimum_neuron_folder_in_the_workspace_plays(workspace):
    from optimum_layout import encoder_folder

    encoder_folder(resolve_demo("demo:tiny-bert"), workspace.artifacts_dir / "from-optimum", "text-classification",
                   "AutoModelForSequenceClassification", sequence_length=32)
    at = open_page("playground.py", "from-optimum")
    at = submit(at, "Classify")
    no_exception(at)
    assert not at.error, [e.value for e in at.error]
    assert {m.label for m in at.metric} >= {"Label", "Compiled (neuron)"}
