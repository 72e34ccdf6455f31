"""NeuronModelFor* classes of the audio, dense-vision and CLIP tasks against transformers eager: the
output types, and padding / unpadding per axis (audio samples and the frames they make, CLIP's text
and image batches, the image batch), with the errors for inputs beyond the compiled shapes.

Tiny random-weight models, torchscript exports. Budget: about 1.5 minutes on 2 cores.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

import neuron_export
from fresh_inputs import CLIP_LABELS, SAMPLING_RATE, images, waveforms
from neuron_export.demo import build_tiny_model
from neuron_export.errors import ArtifactError, InputMismatchError, NeuronExportError

ATOL = 1e-4
SAMPLES = 1600  # compiled audio length: 0.1 s


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """(NeuronModel class name, architecture, task, export options) -> (loaded model, model folder), built once."""
    root = tmp_path_factory.mktemp("modalities")
    made = {}

    def get(class_name: str, arch: str, task: str, **options):
        key = (class_name, arch, task, tuple(sorted(options.items())))
        if key not in made:
            folder = build_tiny_model(arch, task, root / f"{arch}-{task}-{len(made)}")
            model_class = getattr(neuron_export, class_name)
            made[key] = model_class.from_pretrained(folder, export=True, backend="torchscript", use_cache=False, task=task, **options), folder
        return made[key]

    return get


def eager(auto_class: str, folder):
    return getattr(transformers, auto_class).from_pretrained(folder).eval()


def close(actual: torch.Tensor, expected: torch.Tensor, atol: float = ATOL) -> None:
    assert float(expected.abs().max()) > 100 * ATOL, "the eager output is ~0: the comparison would prove nothing"
    torch.testing.assert_close(actual, expected, rtol=0, atol=atol)


def audio(folder, *lengths: int, **options) -> dict[str, torch.Tensor]:
    """The artifact's feature extractor on clips of these lengths (padded to the longest, with its mask if it makes one)."""
    extractor = transformers.AutoFeatureExtractor.from_pretrained(folder)
    clips = [clip[:n] for clip, n in zip(waveforms(len(lengths), max(lengths)), lengths)]
    return dict(extractor(clips, sampling_rate=SAMPLING_RATE, padding=True, return_tensors="pt", **options))


@pytest.mark.parametrize("class_name,task,auto_class,output", [
    ("NeuronModelForAudioClassification", "audio-classification", "AutoModelForAudioClassification", "SequenceClassifierOutput"),
    ("NeuronModelForCTC", "automatic-speech-recognition", "AutoModelForCTC", "CausalLMOutput"),
    ("NeuronModelForAudioFrameClassification", "audio-frame-classification", "AutoModelForAudioFrameClassification", "TokenClassifierOutput"),
    ("NeuronModelForFeatureExtraction", "feature-extraction", "AutoModel", "Wav2Vec2BaseModelOutput"),
])
def test_shorter_audio_is_padded_and_equals_eager_on_the_unpadded_clip(compiled, class_name, task, auto_class, output):
    # wav2vec2 with layer norm takes an attention mask: the padding is inert.
    model, folder = compiled(class_name, "wav2vec2", task, audio_sequence_length=SAMPLES, batch_size=2)
    assert model.compiled.input_names == ["input_values", "attention_mask"]
    reference = eager(auto_class, folder)
    inputs = audio(folder, 1000)
    result = model(**inputs)
    assert type(result).__name__ == output
    with torch.no_grad():
        expected = reference(**inputs)
    frames = reference._get_feat_extract_output_lengths(1000)
    name = "last_hidden_state" if task == "feature-extraction" else "logits"
    if task != "audio-classification":
        assert result[name].shape[:2] == (1, frames)  # the frames of the padding are cut
    close(result[name], expected[name])
    # Two clips of different lengths in one call: the feature extractor's mask, the batch padded to 2.
    batch = audio(folder, 1200, 700)
    with torch.no_grad():
        expected = reference(**batch)
    close(model(**batch)[name], expected[name])


def test_longer_audio_is_an_error_naming_the_compiled_length(compiled):
    model, folder = compiled("NeuronModelForCTC", "wav2vec2", "automatic-speech-recognition", audio_sequence_length=SAMPLES)
    with pytest.raises(InputMismatchError, match=r"larger than the compiled shape \(1, 1600\) \(audio_sequence_length 2000 > 1600\)"):
        model(**audio(folder, 2000))


def test_audio_without_a_mask_is_padded_with_silence_like_the_feature_extractor(compiled):
    # hubert with group norm was trained without an attention mask: compiled with input_values only
    # (like optimum-neuron); a shorter clip is zero-padded, as the feature extractor pads a batch.
    model, folder = compiled("NeuronModelForCTC", "hubert", "automatic-speech-recognition", audio_sequence_length=SAMPLES)
    assert model.compiled.input_names == ["input_values"]
    reference = eager("AutoModelForCTC", folder)
    inputs = audio(folder, 1000)
    padded = torch.nn.functional.pad(inputs["input_values"], (0, SAMPLES - 1000))
    frames = reference._get_feat_extract_output_lengths(1000)
    with torch.no_grad():
        expected = reference(input_values=padded).logits[:, :frames]
    # The pipeline's all-ones mask is the same as none; a mask with padding is refused.
    close(model(**inputs, attention_mask=torch.ones(1, 1000, dtype=torch.long)).logits, expected)
    with pytest.raises(InputMismatchError, match="compiled without an attention mask"):
        model(input_values=inputs["input_values"], attention_mask=torch.tensor([[1] * 900 + [0] * 100]))


def test_xvector_equals_transformers_on_the_padded_batch_with_its_mask(compiled):
    # transformers' masked x-vector pooling counts frames without the TDNN dilation, so a padded clip
    # is ~1e-3 from the unpadded one in transformers itself: compare with transformers on the padded batch.
    model, folder = compiled("NeuronModelForXVector", "wav2vec2", "audio-xvector", audio_sequence_length=SAMPLES)
    inputs = audio(folder, 1000)
    padded = audio(folder, 1000, SAMPLES)
    with torch.no_grad():
        expected = eager("AutoModelForAudioXVector", folder)(**{k: v[:1] for k, v in padded.items()})
    result = model(**inputs)
    assert type(result).__name__ == "XVectorOutput"
    close(result.embeddings, expected.embeddings)
    close(result.logits, expected.logits)


def test_spectrograms_run_at_the_fixed_size(compiled):
    model, folder = compiled("NeuronModelForAudioClassification", "audio-spectrogram-transformer", "audio-classification")
    inputs = audio(folder, 5000)
    with torch.no_grad():
        expected = eager("AutoModelForAudioClassification", folder)(**inputs)
    close(model(**inputs).logits, expected.logits)


def test_clip_pads_both_batches_and_cuts_them_from_both_sides_of_the_logits(compiled):
    model, folder = compiled("NeuronCLIPModel", "clip", "zero-shot-image-classification", text_batch_size=4, image_batch_size=2,
                             sequence_length=16)
    processor = transformers.AutoProcessor.from_pretrained(folder)
    # 3 labels of 4, padded to the longest label only (shorter than 16), one image of 2.
    inputs = dict(processor(text=list(CLIP_LABELS), images=images(1), padding=True, return_tensors="pt"))
    assert inputs["input_ids"].shape[1] < 16
    result = model(**inputs)
    assert type(result).__name__ == "CLIPOutput"
    with torch.no_grad():
        expected = eager("AutoModelForZeroShotImageClassification", folder)(**inputs)
    assert result.logits_per_image.shape == (1, 3) and result.logits_per_text.shape == (3, 1)
    for name in ("logits_per_image", "logits_per_text", "text_embeds", "image_embeds"):
        close(result[name], expected[name])
    too_many = dict(processor(text=[*CLIP_LABELS, "a bird", "a tree"], images=images(1), padding=True, return_tensors="pt"))
    with pytest.raises(InputMismatchError, match="text_batch_size 5 > 4"):
        model(**too_many)


def test_clip_features_load_with_the_clip_class(compiled, tmp_path):
    model, folder = compiled("NeuronCLIPModel", "clip", "feature-extraction", text_batch_size=3, sequence_length=16)
    assert model.manifest.task == "feature-extraction"
    with pytest.raises(ArtifactError, match="load it with NeuronCLIPModel"):
        neuron_export.NeuronModelForFeatureExtraction.from_pretrained(model.path)
    with pytest.raises(NeuronExportError, match="use NeuronCLIPModel"):
        neuron_export.NeuronModelForFeatureExtraction.from_pretrained(folder, export=True, text_batch_size=3)


@pytest.mark.parametrize("class_name,arch,task,auto_class,output,names", [
    ("NeuronModelForObjectDetection", "yolos", "object-detection", "AutoModelForObjectDetection", "YolosObjectDetectionOutput",
     ("logits", "pred_boxes")),
    ("NeuronModelForDepthEstimation", "dpt", "depth-estimation", "AutoModelForDepthEstimation", "DepthEstimatorOutput",
     ("predicted_depth",)),
    ("NeuronModelForSemanticSegmentation", "mobilevit", "image-segmentation", "AutoModelForSemanticSegmentation",
     "SemanticSegmenterOutput", ("logits",)),
    ("NeuronModelForSemanticSegmentation", "beit", "semantic-segmentation", "AutoModelForSemanticSegmentation",
     "SemanticSegmenterOutput", ("logits",)),
    ("NeuronModelForFeatureExtraction", "cvt", "feature-extraction", "AutoModel", "BaseModelOutputWithCLSToken",
     ("last_hidden_state", "cls_token_value")),
])
def test_vision_outputs_are_transformers_types_with_the_batch_padded(compiled, class_name, arch, task, auto_class, output, names):
    model, folder = compiled(class_name, arch, task, batch_size=2)
    inputs = dict(transformers.AutoImageProcessor.from_pretrained(folder)(images(1), return_tensors="pt"))  # YOLOS: + pixel_mask
    result = model(**inputs)
    assert type(result).__name__ == output
    with torch.no_grad():
        expected = eager(auto_class, folder)(pixel_values=inputs["pixel_values"])
    for name in names:
        close(result[name], expected[name])


def test_phi_pads_with_its_pad_token(compiled):
    # Phi's classifier pools the last token that is not the pad token: padding must use exactly that id.
    model, folder = compiled("NeuronModelForSequenceClassification", "phi", "text-classification", sequence_length=16)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    inputs = dict(tokenizer("the cat sat on the mat", return_tensors="pt"))
    with torch.no_grad():
        expected = eager("AutoModelForSequenceClassification", folder)(**inputs)
    close(model(**inputs).logits, expected.logits)


def test_audio_inputs_of_another_sampling_shape_are_refused(compiled):
    model, _ = compiled("NeuronModelForCTC", "wav2vec2", "automatic-speech-recognition", audio_sequence_length=SAMPLES)
    with pytest.raises(InputMismatchError, match=r"input 'input_values' has shape \(1, 2, 800\); the model was compiled for \(1, 1600\)"):
        model(input_values=torch.from_numpy(np.zeros((1, 2, 800), dtype="float32")))
