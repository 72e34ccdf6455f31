"""studio/playground's audio, dense-vision and CLIP views: each result equals what transformers computes
eagerly on the demo's source model (same preprocessing, same post-processing), bad inputs are one-line
errors. Artifacts: the tiny demos of each view, exported once with torchscript. Budget: < 1 minute.
"""


import numpy as np
import pytest
import torch
import transformers

from neuron_export import ExportOptions, export
from neuron_export.demo import default_demo_root, resolve_demo
from neuron_export.errors import NeuronExportError
from studio import charts, playground
from support import Upload, sentence_transformers_clip, wav_bytes

AUDIO_SAMPLES = 8000  # the compiled half second: the 1 s sample clip is cut to it
EXPORTS = {
    "tiny-wav2vec2-audio": {"audio_sequence_length": AUDIO_SAMPLES},
    "tiny-wav2vec2-ctc": {"audio_sequence_length": AUDIO_SAMPLES},
    "tiny-yolos": {},
    "tiny-beit-seg": {},
    "tiny-dpt": {},
    "tiny-clip": {"text_batch_size": 3, "sequence_length": 16},
}


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("playground-modalities")
    cache = {}

    def get(name):
        if name not in cache:
            export(f"demo:{name}", folder / name, ExportOptions(backend="torchscript", **EXPORTS[name]))
            cache[name] = playground.load(folder / name, default_demo_root())
        return cache[name]

    return get


def eager(auto_class: str, demo: str):
    folder = resolve_demo(f"demo:{demo}")
    return getattr(transformers, auto_class).from_pretrained(folder).eval(), folder


def eager_on_image(auto_class: str, demo: str, image):
    """The demo's transformers model, its image processor, and its outputs on the image."""
    model, folder = eager(auto_class, demo)
    processor = transformers.AutoImageProcessor.from_pretrained(folder)
    with torch.no_grad():
        return model, processor, model(**processor(image, return_tensors="pt"))


def test_a_wav_file_is_read_as_mono_at_the_model_rate():
    tone = (0.5 * np.sin(2 * np.pi * 200 * np.arange(4000) / 8000)).astype("float32")
    clip = playground.read_audio(None, Upload(wav_bytes(tone, 8000, channels=2)), 16000)
    assert clip.sampling_rate == 16000 and len(clip.samples) == 8000  # 0.5 s at 16 kHz
    np.testing.assert_allclose(clip.samples[::2], tone, atol=1e-3)  # every other sample is an original one
    with pytest.raises(NeuronExportError, match="cannot read clip.wav as a PCM WAV file"):
        playground.read_audio(None, Upload(b"not a wav file"))


def expected_audio_inputs(folder, clip) -> dict:
    extractor = transformers.AutoFeatureExtractor.from_pretrained(folder)
    return dict(extractor(clip.samples[:AUDIO_SAMPLES], sampling_rate=16000, return_tensors="pt"))


def test_audio_labels_match_transformers_and_long_clips_are_cut_with_a_note(loaded):
    clip, labels, stats = playground.classify_audio(loaded("tiny-wav2vec2-audio"), None, None)  # the 1 s sample
    model, folder = eager("AutoModelForAudioClassification", "tiny-wav2vec2-audio")
    with torch.no_grad():
        probabilities = model(**expected_audio_inputs(folder, clip)).logits[0].softmax(-1)
    assert [label for label, _ in labels] == [model.config.id2label[i] for i in probabilities.argsort(descending=True).tolist()]
    assert [p for _, p in labels] == pytest.approx(sorted(probabilities.tolist(), reverse=True), abs=1e-5)
    assert any("cut to the compiled 8000" in note for note in stats.notes)
    stats.measure()
    assert stats.eager_s > 0 and stats.max_abs_diff < 1e-4


def test_transcript_is_transformers_greedy_ctc_decoding(loaded):
    clip = playground.sample_audio(seconds=0.3)  # shorter than compiled: padded, with the mask
    recording = Upload(wav_bytes(clip.samples, 16000))
    _, text, stats = playground.transcribe(loaded("tiny-wav2vec2-ctc"), recording, None)
    model, folder = eager("AutoModelForCTC", "tiny-wav2vec2-ctc")
    processor = transformers.AutoProcessor.from_pretrained(folder)
    decoded = playground.read_wav(recording.getvalue())
    with torch.no_grad():
        logits = model(**dict(processor(decoded.samples, sampling_rate=16000, return_tensors="pt"))).logits
    assert text == processor.batch_decode(logits.argmax(-1))[0]
    assert stats.notes == []


def test_detection_boxes_match_transformers(loaded):
    image, detections, _ = playground.detect_objects(loaded("tiny-yolos"), None)
    model, processor, outputs = eager_on_image("AutoModelForObjectDetection", "tiny-yolos", image)
    found = processor.post_process_object_detection(outputs, threshold=0.0, target_sizes=[(image.height, image.width)])[0]
    order = found["scores"].argsort(descending=True)
    assert [d.label for d in detections] == [model.config.id2label[int(found["labels"][i])] for i in order]
    np.testing.assert_allclose([d.box for d in detections], found["boxes"][order].numpy(), atol=1e-3)
    drawn = playground.draw_boxes(image, detections[:2])
    assert drawn.size == image.size and np.asarray(drawn).tobytes() != np.asarray(image).tobytes()


def test_segmentation_classes_match_transformers(loaded):
    image, overlaid, segments, _ = playground.segment(loaded("tiny-beit-seg"), None)
    model, processor, outputs = eager_on_image("AutoModelForSemanticSegmentation", "tiny-beit-seg", image)
    expected = processor.post_process_semantic_segmentation(outputs, target_sizes=[(image.height, image.width)])[0].numpy()
    assert (segments.labels == expected).mean() > 0.999  # a pixel on a near-tie may flip
    assert len(segments.legend) >= 2, "the tiny segmenter should not paint one class everywhere"
    assert sum(share for _, _, share in segments.legend) == pytest.approx(1.0)
    assert overlaid.size == image.size


def test_depth_matches_transformers(loaded):
    image, depth, _ = playground.estimate_depth(loaded("tiny-dpt"), None)
    model, processor, outputs = eager_on_image("AutoModelForDepthEstimation", "tiny-dpt", image)
    expected = processor.post_process_depth_estimation(outputs, target_sizes=[(image.height, image.width)])[0]["predicted_depth"]
    assert depth.shape == (image.height, image.width) and depth.std() > 1e-4
    np.testing.assert_allclose(depth, expected.numpy(), atol=1e-4)
    figure = charts.depth_figure(depth.tolist())
    assert figure.data[0].type == "heatmap" and figure.data[0].colorbar.title.text == "depth"


def test_zero_shot_probabilities_match_transformers_clip(loaded):
    labels = "a photo of a cat, a dog, the sea"
    image, scores, _ = playground.zero_shot(loaded("tiny-clip"), None, labels)
    model, folder = eager("AutoModelForZeroShotImageClassification", "tiny-clip")
    processor = transformers.AutoProcessor.from_pretrained(folder)
    names = ["a photo of a cat", "a dog", "the sea"]
    with torch.no_grad():
        probabilities = model(**processor(text=names, images=image, padding=True, return_tensors="pt")).logits_per_image[0].softmax(-1)
    assert dict(scores) == pytest.approx(dict(zip(names, probabilities.tolist())), abs=1e-5)
    with pytest.raises(NeuronExportError, match="4 labels: this model was compiled for at most 3"):
        playground.zero_shot(loaded("tiny-clip"), None, labels + ", a tree")
    with pytest.raises(NeuronExportError, match="at least two labels"):
        playground.zero_shot(loaded("tiny-clip"), None, "cat")


def test_zero_shot_of_a_sentence_transformers_clip_is_its_encode_cosine_similarity(tmp_path):
    st = pytest.importorskip("sentence_transformers")
    folder = sentence_transformers_clip(tmp_path / "st")
    export(folder, tmp_path / "artifact", ExportOptions(backend="torchscript", text_batch_size=3, sequence_length=16))
    loaded = playground.load(tmp_path / "artifact", default_demo_root())
    image, scores, stats = playground.zero_shot(loaded, None, "a photo of a cat, a dog, the sea")
    names = ["a photo of a cat", "a dog", "the sea"]
    model = st.SentenceTransformer(str(folder), device="cpu")
    similarity = st.util.cos_sim(model.encode([image], convert_to_tensor=True), model.encode(names, convert_to_tensor=True))[0]
    assert float(similarity.max() - similarity.min()) > 0.05, "labels scored alike would prove nothing"
    assert dict(scores) == pytest.approx(dict(zip(names, (100 * similarity).softmax(-1).tolist())), abs=1e-5)
    assert stats.max_abs_diff is not None and stats.max_abs_diff < 1e-4  # eager PyTorch ran beside it


def test_the_waveform_of_a_long_clip_is_its_envelope():
    samples = np.sin(np.arange(48000) / 3.0).astype("float32")
    figure = charts.waveform_figure(samples, 16000)
    trace = figure.data[0]
    assert len(trace.x) == charts.WAVEFORM_POINTS and max(trace.x) < 3.0
    assert max(trace.y) == pytest.approx(samples.max()) and min(trace.y) == pytest.approx(samples.min())
