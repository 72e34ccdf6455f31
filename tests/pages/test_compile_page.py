"""AppTest of the Compile page: the form runs a real job (Compile -> job -> Jobs -> Artifacts), and bad
inputs are readable errors that submit nothing.

The compile is a real job: the dispatcher started by the app runs the real CLI in a subprocess."""

import json
import shutil

import pytest
import torch
from page_helpers import open_in_app, wait_for_job
from streamlit.testing.v1 import AppTest
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from neuron_export import cpu, load_artifact
from neuron_export.backends import BACKENDS, cpu_build
from neuron_export.cli import build_parser
from neuron_export.demo import resolve_demo
from neuron_export.options import ExportOptions
from studio.jobs import JobStore


def compile_form(at: AppTest, demo: str, name: str, sequence_length: int = 16) -> None:
    at.selectbox(key="demo").set_value(demo)
    at.run()
    at.selectbox(key="backend").set_value("torchscript")
    at.number_input(key=f"shape-sequence_length-{demo}").set_value(sequence_length)
    at.text_input(key="artifact_name").set_value(name)
    at.run()


def test_compile_form_runs_a_real_job_to_success(fresh_workspace):
    at = open_in_app("compile.py")
    assert not at.exception
    compile_form(at, "demo:tiny-bert", "tiny-bert-ts")
    assert not compile_button(at).disabled
    compile_button(at).click()
    at.run()
    assert not at.error, [e.value for e in at.error]
    job_id = at.query_params["job"][0] if isinstance(at.query_params["job"], list) else at.query_params["job"]
    store = JobStore(fresh_workspace.db_path, fresh_workspace.jobs_dir)
    job = wait_for_job(store, job_id, timeout=120)
    assert str(job.status) == "succeeded", store.log_tail(job_id)
    assert job.validation_passed is True

    artifact = fresh_workspace.artifacts_dir / "tiny-bert-ts"
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert manifest["backend"] == "torchscript" and manifest["shapes"]["sequence_length"] == 16
    # The artifact the form made answers like transformers' eager model on the demo source.
    source = fresh_workspace.demo_dir / "tiny-bert"
    tokenizer = AutoTokenizer.from_pretrained(artifact)
    batch = tokenizer(["the cat sat on the mat"], padding="max_length", max_length=16, return_tensors="pt")
    eager = AutoModelForSequenceClassification.from_pretrained(source).eval()
    with torch.no_grad():
        expected = eager(**batch).logits
    compiled = load_artifact(artifact)(**{k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")})
    torch.testing.assert_close(compiled["logits"], expected, atol=1e-4, rtol=0)

    at.run()  # the live panel now shows the finished job; the name is taken now
    assert not at.exception and len(at.success) == 1 and not at.error
    assert any("already exists" in w.value for w in at.warning) and compile_button(at).disabled

    at.switch_page("views/jobs.py").run()
    assert not at.exception
    frame = at.dataframe[0].value
    assert list(frame["status"]) == ["succeeded"] and list(frame["job"]) == [job_id]

    at.switch_page("views/artifacts.py").run()
    assert not at.exception
    table = at.dataframe[0].value
    row = table[table["name"] == "tiny-bert-ts"].iloc[0]
    assert row["task"] == "text-classification"
    assert "not Neuron" in row["backend · runs on"] and row["validation"].startswith("validated")


def compile_button(at: AppTest):
    return next(b for b in at.button if b.label == "Compile")


@pytest.mark.parametrize(
    "name, message",
    [("../escape", "Invalid output name"), ("/abs/path", "Invalid output name"), ("", "Invalid output name")],
)
def test_bad_artifact_names_show_an_error_and_disable_compile(fresh_workspace, name, message):
    at = open_in_app("compile.py")
    compile_form(at, "demo:tiny-bert", name)
    assert not at.exception
    assert any(message in e.value for e in at.error), [e.value for e in at.error]
    assert compile_button(at).disabled
    assert JobStore(fresh_workspace.db_path, fresh_workspace.jobs_dir).list() == []


def test_existing_artifact_needs_replace(fresh_workspace):
    (fresh_workspace.artifacts_dir / "taken").mkdir(parents=True)
    at = open_in_app("compile.py")
    compile_form(at, "demo:tiny-bert", "taken")
    assert any("already exists" in w.value for w in at.warning) and compile_button(at).disabled
    at.checkbox(key="force").check().run()
    assert not at.warning and not at.error and not compile_button(at).disabled


def local_folder(at: AppTest, typed: str) -> AppTest:
    at.segmented_control(key="source_kind").set_value("Local folder").run()
    return at.text_input(key="folder").set_value(typed).run()


def test_local_folders_outside_the_model_roots_get_the_same_answer_as_missing_ones(fresh_workspace, tmp_path):
    at = open_in_app("compile.py")
    answers = set()
    for typed in ("/etc/passwd", "/root/.ssh", str(tmp_path / "nope"), str(fresh_workspace.root / "nope")):
        local_folder(at, typed)
        assert not at.exception and compile_button(at).disabled
        [error] = [e.value for e in at.error]
        assert "is a file" not in error and "does not exist" not in error
        answers.add(error.replace(repr(typed), "PATH"))
    assert len(answers) == 1, answers
    assert JobStore(fresh_workspace.db_path, fresh_workspace.jobs_dir).list() == []


def test_a_local_folder_in_the_workspace_is_read(fresh_workspace):
    model = shutil.copytree(resolve_demo("demo:tiny-bert"), fresh_workspace.root / "models" / "bert")
    at = local_folder(open_in_app("compile.py"), str(model))
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("Detected task:** text-classification" in m.value for m in at.markdown)
    assert not compile_button(at).disabled


@pytest.mark.parametrize("typed", ["../../etc", "/etc/passwd", "a/b/c"])
def test_a_hub_id_that_is_a_path_is_refused(fresh_workspace, typed):
    at = open_in_app("compile.py")
    at.segmented_control(key="source_kind").set_value("Hugging Face Hub").run()
    at.text_input(key="hub_id").set_value(typed).run()
    assert any("is not a Hub model id" in e.value for e in at.error) and compile_button(at).disabled


def test_a_neuron_backend_offers_cross_compiling_and_queues_its_command(fresh_workspace, monkeypatch):
    """As on a host whose Neuron SDK compiles (where it does not, the form says so: test_compile_checks_page)."""
    neuron = next(backend for backend in BACKENDS.values() if backend.is_neuron)
    monkeypatch.setattr(neuron, "unavailable_reason", lambda options: None)
    monkeypatch.setenv("NEURON_EXPORT_MAX_JOBS", "0")  # the queued command is the test; no job runs
    at = open_in_app("compile.py")
    compile_form(at, "demo:tiny-bert", "bert-inf2")
    at.selectbox(key="backend").set_value(neuron.name).run()
    assert at.selectbox(key="device").disabled
    at.selectbox(key="instance_type").set_value("inf2 (cross-compile)")
    args = queued_command(at, fresh_workspace)
    assert (args.backend, args.instance_type, args.device) == ("neuron", "inf2", "cpu")
    assert (args.model, args.output) == ("demo:tiny-bert", str(fresh_workspace.artifacts_dir / "bert-inf2"))


def test_cpu_code_choices_are_the_levels_this_host_can_build(fresh_workspace):
    """A CPU level the host cannot build (torch without Inductor's cpp.march, or a CPU below the level) is not
    offered, and a caption says why, rather than a choice whose Compile button then stays disabled."""
    at = open_in_app("compile.py")
    compile_form(at, "demo:tiny-bert", "bert-levels")
    offered = at.selectbox(key="cpu_isa").options
    captions = " ".join(c.value for c in at.caption)
    assert offered[0] == "this CPU (native)"
    if not hasattr(torch._inductor.config.cpp, "march"):
        assert offered == ["this CPU (native)"] and "needs torch >= 2.13" in captions
        return
    flags = cpu.host_flags()  # the CPU's own /proc/cpuinfo flags against each level's list
    assert ("any AVX2 CPU (x86-64-v3)" in offered) == (set(cpu.ISA_LEVELS["avx2"].flags) <= flags)
    assert ("any AVX-512 CPU (x86-64-v4)" in offered) == (set(cpu.ISA_LEVELS["avx512"].flags) <= flags)


def test_cpu_code_and_int8_choices_reach_the_queued_command(fresh_workspace, monkeypatch):
    """inductor: CPU code for any AVX-512 CPU, int8 linears; the job runs the CLI with those flags. With a
    backend that has no machine code of its own (torchscript) the CPU choice is disabled."""
    if cpu_build.isa_problem(ExportOptions(cpu_isa="avx512")):
        pytest.skip(cpu_build.isa_problem(ExportOptions(cpu_isa="avx512")))
    monkeypatch.setenv("NEURON_EXPORT_MAX_JOBS", "0")  # the queued command is the test; no job runs
    at = open_in_app("compile.py")
    compile_form(at, "demo:tiny-bert", "bert-avx512-int8")
    assert at.selectbox(key="cpu_isa").disabled
    at.selectbox(key="backend").set_value("inductor").run()
    at.selectbox(key="cpu_isa").set_value("avx512")
    at.selectbox(key="quantize").set_value("int8-dynamic")
    args = queued_command(at, fresh_workspace)
    assert (args.backend, args.cpu_isa, args.quantize) == ("inductor", "avx512", "int8-dynamic")


def queued_command(at, workspace):
    """Click Compile; the arguments of the one export job it queued."""
    next(b for b in at.button if b.label == "Compile").click()
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    (job,) = JobStore(workspace.db_path, workspace.jobs_dir).list()
    return build_parser().parse_args(job.argv[3:])  # after `python -m neuron_export`


def test_compile_form_builds_a_text_generation_model(fresh_workspace):
    """A decoder LLM from the form: its shapes are the batch and the KV cache length; the job's artifact
    holds the prompt and decode graphs and generates what transformers generates."""
    from transformers import AutoModelForCausalLM

    from neuron_export import NeuronModelForCausalLM

    at = open_in_app("compile.py")
    compile_form(at, "demo:tiny-llama", "llama-ts")
    assert [n.key for n in at.number_input if n.key.startswith("shape-")] == ["shape-batch_size-demo:tiny-llama",
                                                                              "shape-sequence_length-demo:tiny-llama"]
    next(b for b in at.button if b.label == "Compile").click()
    at.run()
    assert not at.error, [e.value for e in at.error]
    store = JobStore(fresh_workspace.db_path, fresh_workspace.jobs_dir)
    (job,) = store.list()
    assert str(wait_for_job(store, job.id, timeout=240).status) == "succeeded", store.log_tail(job.id)
    model = NeuronModelForCausalLM.from_pretrained(fresh_workspace.artifacts_dir / "llama-ts")
    inputs = AutoTokenizer.from_pretrained(model.path)("the quick brown fox", return_tensors="pt")
    eager = AutoModelForCausalLM.from_pretrained(fresh_workspace.demo_dir / "tiny-llama").eval()
    assert model.generate(**inputs, max_new_tokens=5).tolist() == eager.generate(**inputs, max_new_tokens=5).tolist()


@pytest.mark.parametrize("demo,fields", [
    ("demo:tiny-wav2vec2-ctc", {"batch_size": 1, "audio_sequence_length": 16000}),
    ("demo:tiny-clip", {"text_batch_size": 4, "sequence_length": 77, "image_batch_size": 1, "num_channels": 3, "height": 32, "width": 32}),
    ("demo:tiny-yolos", {"batch_size": 1, "num_channels": 3, "height": 32, "width": 48}),  # its image processor's size
])
def test_the_form_asks_for_the_shapes_of_the_models_modality(fresh_workspace, demo, fields):
    at = open_in_app("compile.py")
    at.selectbox(key="demo").set_value(demo)
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    shown = {n.key.removeprefix("shape-").removesuffix(f"-{demo}"): n.value for n in at.number_input if n.key.startswith("shape-")}
    assert shown == fields


def test_buckets_typed_in_the_form_compile_one_model_per_length(fresh_workspace):
    at = open_in_app("compile.py")
    compile_form(at, "demo:tiny-bert", "bert-buckets")
    at.text_input(key="buckets-sequence_length-demo:tiny-bert").set_value("16, 8").run()
    assert not at.error, [e.value for e in at.error]
    next(b for b in at.button if b.label == "Compile").click()
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    store = JobStore(fresh_workspace.db_path, fresh_workspace.jobs_dir)
    (job,) = store.list()
    assert build_parser().parse_args(job.argv[3:]).sequence_length == (16, 8)  # what the CLI runs
    assert str(wait_for_job(store, job.id, timeout=180).status) == "succeeded", store.log_tail(job.id)
    manifest = json.loads((fresh_workspace.artifacts_dir / "bert-buckets" / "manifest.json").read_text())
    assert [(b["name"], b["validation"]["passed"]) for b in manifest["buckets"]] == [("8", True), ("16", True)]


@pytest.mark.parametrize("text", ["8,x", "auto:64-8"])
def test_bad_buckets_show_an_error_and_submit_nothing(fresh_workspace, text):
    at = open_in_app("compile.py")
    compile_form(at, "demo:tiny-bert", "bert-bad-buckets")
    at.text_input(key="buckets-sequence_length-demo:tiny-bert").set_value(text).run()
    assert any("--sequence_length" in e.value for e in at.error), [e.value for e in at.error]
    assert not at.exception and compile_button(at).disabled
    assert JobStore(fresh_workspace.db_path, fresh_workspace.jobs_dir).list() == []
