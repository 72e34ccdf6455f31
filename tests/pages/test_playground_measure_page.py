"""AppTest of how the Playground page measures and words its figures (issue #18): the speed-up is
timed the benchmark's way and says how; the similarity table numbers rows and columns alike; Stable
Diffusion shows its steps, seconds per step, and "identical" when the pixels are. Numbers are
compared with eager transformers / diffusers; no speed is asserted."""

import re

import numpy
import pytest
import torch
import transformers
from page_helpers import no_exception, open_page, submit

from neuron_export import read_manifest
from neuron_export.demo import minilm_path

SENTENCES = ["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby."]


def captions(at) -> list[str]:
    return [caption.value for caption in at.caption]


def transformers_minilm(sentences):
    """Per sentence (unpadded, as the page runs them one call each), MiniLM's token embeddings."""
    model = transformers.AutoModel.from_pretrained(minilm_path()).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_path())
    with torch.no_grad():
        return [(model(**tokenizer(s, return_tensors="pt")).last_hidden_state[0], s) for s in sentences]


@pytest.fixture
def minilm_page(workspace):
    at = open_page("playground.py", "minilm")
    at.text_area[0].set_value("\n".join(SENTENCES))
    at = submit(at, "Embed and compare")
    no_exception(at)
    assert not at.error, [e.value for e in at.error]
    return at


def test_speed_is_measured_the_benchmark_way_and_says_how(workspace, minilm_page):
    at = minilm_page
    method = next(c for c in captions(at) if c.startswith("Median of"))
    found = re.search(r"Median of (\d+) calls? per side, alternating in (\d+) rounds? after 2 warm-up calls, (\d+) threads for both, "
                      r"as the Benchmark page measures; both sides run the input padded to the compiled shape \(([\d x]+)\)", method)
    assert found, method
    calls, rounds, threads, shape = int(found[1]), int(found[2]), int(found[3]), found[4]
    busy = any(c.startswith(":material/info: This host is busy") for c in captions(at))
    assert calls >= rounds >= (1 if busy else 3) and threads == torch.get_num_threads()  # a busy host: one round (no speed-up)
    manifest = read_manifest(workspace.artifacts_dir / "minilm")
    assert shape == " x ".join(map(str, manifest.inputs[0].shape))  # the compiled shape, not the sentence's 8-odd tokens
    metrics = {m.label: m.value for m in at.metric}
    compiled_ms, eager_ms = (float(metrics[label].removesuffix(" ms").replace(",", "")) for label in ("Compiled (torchscript)", "Eager PyTorch"))
    if metrics["Speed-up"] == "noisy":
        assert "Too noisy to tell which is faster" in method or busy
    else:  # the ratio of the two medians shown (rounded for display)
        assert "noisy" not in method and not busy
        assert float(metrics["Speed-up"].removesuffix("×")) == pytest.approx(eager_ms / compiled_ms, rel=0.05)


def test_the_outputs_difference_is_the_compiled_models_distance_to_transformers(workspace, minilm_page):
    from neuron_export.modeling import model_class_for_artifact

    artifact = workspace.artifacts_dir / "minilm"
    compiled = model_class_for_artifact(artifact).from_pretrained(artifact)
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_path())
    differences = []
    with torch.no_grad():
        for tokens, sentence in transformers_minilm(SENTENCES):
            output = compiled(**tokenizer(sentence, return_tensors="pt"))
            pooled = torch.nn.functional.normalize(tokens.mean(0), dim=-1)  # all-MiniLM-L6-v2: mean pooling, then Normalize
            differences += [float((output["token_embeddings"][0] - tokens).abs().max()),
                            float((output["sentence_embedding"][0] - pooled).abs().max())]
    difference = max(differences)
    method = next(c for c in captions(minilm_page) if c.startswith("Median of"))
    if difference == 0:
        assert "Compiled and eager outputs are identical." in method
    else:
        shown = re.search(r"differ by at most ([\d.e+-]+)\.", method)
        assert shown and float(shown[1]) == pytest.approx(difference, rel=0.06), method


def test_similarity_table_numbers_rows_and_columns_alike(minilm_page):
    table = minilm_page.dataframe[0].value
    assert list(table.index) == ["1", "2", "3"] and list(table.columns) == ["Sentence", "1", "2", "3"]
    assert list(table["Sentence"]) == SENTENCES
    pooled = torch.stack([tokens.mean(0) for tokens, _ in transformers_minilm(SENTENCES)])  # one sentence a call: no padding
    pooled = torch.nn.functional.normalize(pooled, dim=-1)
    expected = pooled @ pooled.T
    for row in range(3):  # row "i", column "j": sentence i against sentence j
        for column in range(3):
            assert table.loc[str(row + 1), str(column + 1)] == pytest.approx(float(expected[row, column]), abs=1e-4)
    assert table.loc["1", "2"] > 0.5 > table.loc["1", "3"]  # trained weights: the eating sentences are close


def test_stable_diffusion_shows_its_steps_and_says_identical_or_by_how_much(workspace):
    import diffusers

    import neuron_export

    at = open_page("playground.py", "tiny-sd")
    at.slider[0].set_value(2)  # steps
    at = submit(at, "Generate")
    no_exception(at)
    assert not at.error, [e.value for e in at.error]
    eager = diffusers.StableDiffusionPipeline.from_pretrained(workspace.demo_dir / "tiny-sd", safety_checker=None,
                                                              requires_safety_checker=False)
    eager.set_progress_bar_config(disable=True)
    compiled = neuron_export.NeuronStableDiffusionPipeline.from_pretrained(workspace.artifacts_dir / "tiny-sd")
    compiled.set_progress_bar_config(disable=True)
    request = dict(prompt="a photo of an astronaut riding a horse on mars", negative_prompt="blurry, low quality",
                   num_inference_steps=2, guidance_scale=7.5, height=64, width=64)
    images = [pipe(**request, generator=torch.Generator().manual_seed(0)).images[0] for pipe in (compiled, eager)]
    difference = numpy.abs(numpy.asarray(images[0], dtype=numpy.float32) - numpy.asarray(images[1], dtype=numpy.float32)).max() / 255
    steps = len(eager.scheduler.timesteps)  # what diffusers ran for 2 inference steps

    bars = [bar.proto.text for bar in at.get("progress")]
    assert len(bars) == 2, bars  # one bar per pipeline, moved step by step
    assert any(re.fullmatch(rf"Compiled pipeline: step {steps} of {steps} · [\d.]+ ms per step", text) for text in bars), bars
    assert any(re.fullmatch(rf"Eager diffusers pipeline: step {steps} of {steps} · [\d.]+ ms per step", text) for text in bars), bars
    assert any("Random weights: noise is expected" in c for c in captions(at))
    how = next(c for c in captions(at) if c.startswith("One run of each pipeline"))
    assert re.search(r"Denoising: compiled [\d.]+ ms per step; eager [\d.]+ ms per step\.", how), how
    if difference == 0:
        assert "Compiled and eager outputs are identical." in how and "differ by at most" not in how
    else:
        assert f"differ by at most {difference:.2g} (pixels, 0-1 scale)" in how
