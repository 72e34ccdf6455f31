"""Bucketed artifacts against eager transformers: a tiny classifier (weights re-drawn so its outputs are
O(1)) exported with three sequence buckets; inputs inside each bucket, at each boundary and past the
largest; the model classes, pipeline(), dynamic batch with unpadded hidden states, inductor's package
with one copy of the weights, the compile cache, and the bucket benchmark.

Budget: < 3 minutes on 2 cores (torchscript for most; inductor: two exports of two buckets and one single-shape).
"""

from __future__ import annotations

import zipfile

import pytest
import torch
import transformers

from neuron_export import ExportOptions, NeuronModelForFeatureExtraction, NeuronModelForSequenceClassification, export, load_artifact, pipeline
from neuron_export.benchmark import BenchmarkOptions
from neuron_export.benchmark.buckets import benchmark_lengths, format_lengths_report
from neuron_export.errors import InputMismatchError, NeuronExportError
from support import build_o1_classifier, run_cli

BUCKETS = (8, 16, 32)
# inside each bucket, at each boundary, and just past each but the largest
LENGTHS = {3: 8, 8: 8, 9: 16, 12: 16, 16: 16, 17: 32, 25: 32, 32: 32}
ATOL = 1e-4
SENTENCES = ["a cat", "the cat sat on the mat while the dog barked"]  # 4 and 16 tokens: two buckets


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A tiny BERT classifier whose logits are O(1) (default init gives ~0.01: any padding leak would hide)."""
    return build_o1_classifier(tmp_path_factory.mktemp("bucket-source") / "classifier")


@pytest.fixture(scope="module")
def eager(source):
    return transformers.AutoModelForSequenceClassification.from_pretrained(source).eval()


@pytest.fixture(scope="module")
def bucketed(source, tmp_path_factory):
    """Compiled at batch 2 so a call can mix a short row (masked tail) and a full one."""
    output = tmp_path_factory.mktemp("bucketed") / "classifier"
    result = export(str(source), output, ExportOptions(backend="torchscript", batch_size=2, sequence_length=BUCKETS, use_cache=False))
    return result


def _inputs(length: int, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    mask = torch.ones(2, length, dtype=torch.int64)
    mask[1, max(1, length // 2):] = 0  # the second row is a shorter sentence, padded by its tokenizer
    return {"input_ids": torch.randint(5, 90, (2, length), generator=generator), "attention_mask": mask,
            "token_type_ids": torch.zeros(2, length, dtype=torch.int64)}


def test_manifest_lists_every_bucket_with_its_verdict(bucketed):
    manifest = bucketed.manifest
    assert bucketed.validation_passed is True
    assert [b.shapes for b in manifest.buckets] == [{"sequence_length": n} for n in BUCKETS]
    assert all(b.validation.passed and b.compile_s > 0 for b in manifest.buckets)
    assert [b.inputs[0].shape for b in manifest.buckets] == [[2, n] for n in BUCKETS]
    assert manifest.shapes["sequence_length"] == 32 and manifest.bucketing.fit == "pad"
    assert manifest.bucketing.shared_weights  # one model.pt for the three traces
    runs = bucketed.reports[0].runs
    assert sorted({run["input_ids"][1] for run in runs}) == list(BUCKETS)  # each validated at its own shape


@pytest.mark.parametrize("length", list(LENGTHS))
def test_each_call_runs_on_the_smallest_bucket_that_fits(bucketed, eager, length):
    model = load_artifact(bucketed.artifact)
    assert model.buckets == [{"sequence_length": n} for n in BUCKETS]
    inputs = _inputs(length, seed=length)
    logits = model(**inputs)["logits"]
    assert model.last_bucket == str(LENGTHS[length])
    with torch.no_grad():
        expected = eager(**inputs).logits  # the unpadded input
    assert expected.abs().max() > 0.3  # O(1): a padding leak cannot hide below atol
    torch.testing.assert_close(logits, expected, atol=ATOL, rtol=0)


def test_past_the_largest_bucket_is_an_error_naming_them(bucketed):
    model = load_artifact(bucketed.artifact)
    with pytest.raises(InputMismatchError, match=r"sequence_length 33 is more than the largest bucket.*sequence_length 8, 16, 32"):
        model(**_inputs(33, seed=0))
    classifier = NeuronModelForSequenceClassification.from_pretrained(bucketed.artifact)
    with pytest.raises(InputMismatchError, match="8, 16, 32"):
        classifier(**_inputs(40, seed=0))


def test_model_class_and_pipeline_pick_buckets(bucketed, eager, source):
    classifier = NeuronModelForSequenceClassification.from_pretrained(bucketed.artifact)
    assert classifier.buckets == [{"sequence_length": n} for n in BUCKETS]
    tokenizer = transformers.AutoTokenizer.from_pretrained(source)
    for sentence in SENTENCES:
        encoded = tokenizer([sentence], return_tensors="pt")  # one row: the model class pads the batch to 2
        got = classifier(**encoded).logits
        assert classifier.compiled.last_bucket == str(min(n for n in BUCKETS if n >= encoded["input_ids"].shape[1]))
        with torch.no_grad():
            torch.testing.assert_close(got, eager(**encoded).logits, atol=ATOL, rtol=0)
    ours = pipeline("text-classification", model=classifier)(SENTENCES, top_k=None)
    theirs = transformers.pipeline("text-classification", model=eager, tokenizer=tokenizer)(SENTENCES, top_k=None)
    for mine, reference in zip(ours, theirs):
        assert [r["label"] for r in mine] == [r["label"] for r in reference]
        assert [r["score"] for r in mine] == pytest.approx([r["score"] for r in reference], abs=ATOL)


def test_dynamic_batch_then_bucket_and_unpadded_hidden_states(source, tmp_path):
    """Batch first (any batch size, in compiled-size chunks), then the sequence bucket; outputs that have
    the sequence axis come back at the call's length."""
    result = export(str(source), tmp_path / "features", ExportOptions(
        task="feature-extraction", backend="torchscript", sequence_length=(8, 16), dynamic_batch_size=True,
        output_hidden_states=True, use_cache=False))
    assert result.validation_passed is True
    axes = result.manifest.bucketing.outputs
    assert axes["last_hidden_state"] == [None, "sequence_length", None] and axes["pooler_output"] == [None, None]
    model = NeuronModelForFeatureExtraction.from_pretrained(result.artifact)
    eager = transformers.AutoModel.from_pretrained(source).eval()
    inputs = {k: torch.cat([v, v[:1]]) for k, v in _inputs(11, seed=5).items()}  # 3 rows of 11 tokens
    outputs = model(**inputs, output_hidden_states=True)
    assert model.compiled.last_bucket == "16"
    with torch.no_grad():
        expected = eager(**inputs, output_hidden_states=True)
    assert outputs.last_hidden_state.shape == (3, 11, expected.last_hidden_state.shape[-1])
    torch.testing.assert_close(outputs.last_hidden_state, expected.last_hidden_state, atol=ATOL, rtol=0)
    torch.testing.assert_close(outputs.pooler_output, expected.pooler_output, atol=ATOL, rtol=0)
    for got, want in zip(outputs.hidden_states, expected.hidden_states, strict=True):
        torch.testing.assert_close(got, want, atol=ATOL, rtol=0)


def test_inductor_buckets_share_one_copy_of_the_weights(source, eager, tmp_path):
    # A fresh process: an earlier -O2 compile in this one would have registered oneDNN's weight pre-packing
    # (next test), and the buckets would then rightly keep a copy each.
    completed = run_cli("export", "--model", str(source), "--backend", "inductor", "--task", "text-classification",
                        "--sequence_length", "8,16", "--no-cache", str(tmp_path / "inductor"))
    assert completed.returncode == 0, completed.stderr[-2000:]
    artifact = load_artifact(tmp_path / "inductor")
    bucketing = artifact.manifest.bucketing
    if not hasattr(torch._inductor.config.aot_inductor, "package_constants_on_disk_format"):  # torch 2.9 (the torch 2.9 CI job)
        assert not bucketing.shared_weights and f"torch {torch.__version__} cannot share them" in bucketing.weights_note
        _assert_two_buckets_match(artifact, eager)
        return
    assert bucketing.shared_weights, bucketing.weights_note
    with zipfile.ZipFile(tmp_path / "inductor" / "model.pt2") as package:
        names = package.namelist()
        weights = sum(package.getinfo(n).file_size for n in names if "/data/weights/" in n)
        models = {n.split("/data/aotinductor/")[1].split("/")[0] for n in names if "/data/aotinductor/" in n}
    assert models == {"bucket_8", "bucket_16"}
    parameters = sum(p.numel() * p.element_size() for p in eager.parameters())
    assert parameters * 0.9 < weights < parameters * 1.5  # once, not once per bucket
    _assert_two_buckets_match(artifact, eager)


def test_inductor_o2_buckets_after_a_prepacked_o2_compile_in_the_same_process(source, eager, tmp_path):
    """torch registers oneDNN's weight pre-packing once per process and applies it to every later frozen
    compile: -O2 buckets compiled after a single-shape -O2 export keep a copy each, and the note says why."""
    single = export(str(source), tmp_path / "single", ExportOptions(backend="inductor", sequence_length=8, use_cache=False))
    assert single.validation_passed is True
    result = export(str(source), tmp_path / "buckets", ExportOptions(backend="inductor", sequence_length=(8, 16), use_cache=False))
    assert result.validation_passed is True and not result.manifest.bucketing.shared_weights
    if torch.backends.mkldnn.is_available() and hasattr(torch._inductor.config.aot_inductor, "package_constants_on_disk_format"):
        assert "registered oneDNN's weight pre-packing" in result.manifest.bucketing.weights_note
    _assert_two_buckets_match(load_artifact(result.artifact), eager)


@pytest.mark.slow
def test_inductor_o3_buckets_keep_their_own_prepacked_weights(source, eager, tmp_path):
    result = export(str(source), tmp_path / "o3", ExportOptions(backend="inductor", optlevel=3, sequence_length=(8, 16), use_cache=False))
    assert result.validation_passed is True and not result.manifest.bucketing.shared_weights
    _assert_two_buckets_match(load_artifact(result.artifact), eager)


def _assert_two_buckets_match(model, eager) -> None:
    """Calls of 5 and 16 tokens (batch 1) run on the 8 and 16 buckets and equal eager transformers."""
    for length, bucket in ((5, "8"), (16, "16")):
        inputs = {k: v[:1] for k, v in _inputs(length, seed=length).items()}
        logits = model(**inputs)["logits"]
        assert model.last_bucket == bucket
        with torch.no_grad():
            torch.testing.assert_close(logits, eager(**inputs).logits, atol=ATOL, rtol=0)


def test_a_bucketed_export_is_not_the_single_shape_one_in_the_cache(source, tmp_path):
    single = export(str(source), tmp_path / "single", ExportOptions(backend="torchscript", sequence_length=16))
    assert not single.cache_hit and not single.manifest.is_bucketed
    both = export(str(source), tmp_path / "both", ExportOptions(backend="torchscript", sequence_length=(8, 16)))
    assert not both.cache_hit and both.manifest.is_bucketed
    again = export(str(source), tmp_path / "again", ExportOptions(backend="torchscript", sequence_length=(16, 8)))
    assert again.cache_hit and [b.name for b in load_artifact(again.artifact).records] == ["8", "16"]


def test_benchmark_times_real_lengths_on_their_buckets(bucketed):
    report = benchmark_lengths(bucketed.artifact, [3, 12, 30], BenchmarkOptions(iterations=2, warmup=1, rounds=1, save=False))
    assert [(run["sequence_length"], run["bucket"]) for run in report["runs"]] == [(3, 8), (12, 16), (30, 32)]
    for run in report["runs"]:
        assert run["same_inputs"] and {name: side["status"] for name, side in run["sides"].items()} == {
            "compiled": "ok", "largest-bucket": "ok", "eager": "ok"}
        assert max(run["sides"]["compiled"]["max_abs_diff"].values()) < ATOL  # the same answers as eager
        assert run["sides"]["compiled"]["input_shapes"]["input_ids"] == [2, run["sequence_length"]]
    text = "\n".join(format_lengths_report(report))
    assert "largest only" in text and "torch CPU capability" in text


def test_benchmark_lengths_refuses_what_it_cannot_time(bucketed, tmp_path, source):
    with pytest.raises(NeuronExportError, match="from 1 to the largest bucket, 32"):
        benchmark_lengths(bucketed.artifact, [50])
    single = export(str(source), tmp_path / "one", ExportOptions(backend="torchscript", sequence_length=8, disable_validation=True))
    with pytest.raises(NeuronExportError, match="one static shape"):
        benchmark_lengths(single.artifact, [4])
