"""AppTest of the Benchmark page on real artifacts: the artifact captions (compiled batch of a model
and of a pipeline), a real benchmark job from the form and its stored results in the charts and table
(its panel does not say "not validated"), batch sizes that are refused before anything is queued, the
artifact's own pipeline class as the default (an SDXL refiner: img2img), and the artifact picked on the
previous page preselected."""

import json
import shutil

from page_helpers import no_exception, open_in_app, submit, wait_for_job

from neuron_export import ExportOptions, export
from neuron_export.benchmark import benchmark_history
from studio.jobs import BENCHMARK, JobStore, benchmark_command

TIMEOUT = 180  # a benchmark job: the worker, the CLI and one process per side


def test_captions_and_an_artifact_without_results(workspace):
    at = open_in_app("benchmark.py", "tiny-bert")
    no_exception(at)
    choices = at.multiselect[0]
    assert [path.name for path in choices.value] == ["tiny-bert"]
    captions = {option.split("  —  ")[0]: option.split("  —  ")[1] for option in choices.options}
    assert captions["tiny-bert"] == "text-classification, -O2, batch 1, torchscript · CPU · not Neuron"
    assert captions["tiny-sd"].startswith("stable-diffusion, -O2, batch 1,")
    assert any("No benchmark results yet for tiny-bert" in i.value for i in at.info)
    assert not at.get("plotly_chart")


def test_the_form_runs_a_benchmark_job_and_the_page_shows_its_results(workspace, artifact_copy):
    at = open_in_app("benchmark.py", artifact_copy.name)
    at.number_input[0].set_value(3)  # timed calls
    at.number_input[1].set_value(1)  # warm-up calls
    at.checkbox[0].uncheck()  # no ONNX Runtime
    at = submit(at, "Run benchmark")
    no_exception(at)
    store = JobStore(workspace.db_path, workspace.jobs_dir)
    (job,) = [j for j in store.list(limit=None) if j.artifact == str(artifact_copy) and not j.is_finished]
    assert job.kind == BENCHMARK
    assert job.argv == benchmark_command(artifact_copy, iterations=3, warmup=1, steps=10, onnx=False)
    job = wait_for_job(store, job.id, timeout=TIMEOUT)
    assert str(job.status) == "succeeded", store.log_tail(job.id)

    at.run()
    no_exception(at)
    (done,) = [s.value for s in at.success if s.value.startswith("Done in")]
    assert "validated" not in done  # a benchmark has nothing to validate
    (report,) = benchmark_history(artifact_copy)
    assert any(h.value == "Latest results" for h in at.subheader)
    assert len(at.get("plotly_chart")) == 5  # latency, speed-up, throughput, % of peak, history
    rows = {row["side"]: row for row in at.dataframe[0].value.to_dict("records")}
    sides = report["runs"][0]["sides"]
    for side, label in (("compiled", "compiled"), ("eager", "eager PyTorch")):
        assert rows[label]["status"] == "ok" and rows[label]["batch size"] == 1
        assert rows[label]["p50 ms"] == round(sides[side]["stats"]["p50_ms"], 3)
    assert rows["ONNX Runtime"]["status"].startswith("skipped")


def test_batch_sizes_are_checked_before_anything_is_queued(workspace, artifact_copy):
    manifest = json.loads((artifact_copy / "manifest.json").read_text())
    (artifact_copy / "manifest.json").write_text(json.dumps({**manifest, "dynamic_batch": True}))
    store = JobStore(workspace.db_path, workspace.jobs_dir)
    earlier = {job.id for job in store.list(limit=None)}
    at = open_in_app("benchmark.py", artifact_copy.name)
    assert not at.text_input[0].disabled  # batch sizes: only for dynamic-batch artifacts
    at.text_input[0].set_value("1, 0, x")
    at = submit(at, "Run benchmark")
    no_exception(at)
    assert any("positive whole numbers" in e.value for e in at.error)
    assert [job for job in store.list(limit=None) if job.id not in earlier] == []

    at.text_input[0].set_value("4, 1, 4")
    at = submit(at, "Run benchmark")
    (job,) = [job for job in store.list(limit=None) if job.id not in earlier]
    store.cancel(job.id)
    assert job.argv == benchmark_command(artifact_copy, iterations=30, warmup=5, steps=10, batch_sizes=[1, 4])
    wait_for_job(store, job.id)


def test_the_artifact_picked_on_the_previous_page_is_preselected(workspace):
    at = open_in_app("report.py", "minilm")
    assert at.selectbox[0].value == "minilm"
    at.query_params.clear()  # the sidebar's links drop the URL's query; the session remembers the pick
    at.switch_page("views/benchmark.py").run()
    no_exception(at)
    newest = max(workspace.list_artifacts(), key=lambda p: json.loads((p / "manifest.json").read_text())["created"])
    assert newest.name != "minilm"  # what the page would otherwise preselect
    assert [path.name for path in at.multiselect[0].value] == ["minilm"]


def test_an_sdxl_refiner_is_timed_as_the_img2img_class_it_was_saved_as(workspace, monkeypatch):
    monkeypatch.setenv("NEURON_EXPORT_DEMO_DIR", str(workspace.demo_dir))
    refiner = workspace.artifacts_dir / "tiny-sdxl-refiner"
    export("demo:tiny-sdxl-refiner", refiner, ExportOptions(backend="torchscript", disable_validation=True))
    store = JobStore(workspace.db_path, workspace.jobs_dir)
    earlier = {job.id for job in store.list(limit=None)}
    try:
        at = open_in_app("benchmark.py", refiner.name)
        no_exception(at)
        classes = at.multiselect[1]  # after the artifacts
        assert classes.options[0] == "NeuronStableDiffusionXLImg2ImgPipeline" and len(classes.options) > 1
        assert classes.value == ["NeuronStableDiffusionXLImg2ImgPipeline"]
        at = submit(at, "Run benchmark")
        no_exception(at)
        (job,) = [job for job in store.list(limit=None) if job.id not in earlier]
        store.cancel(job.id)
        assert job.argv == benchmark_command(refiner, iterations=30, warmup=5, steps=10,
                                             pipeline="NeuronStableDiffusionXLImg2ImgPipeline")
        wait_for_job(store, job.id)
    finally:
        shutil.rmtree(refiner, ignore_errors=True)
