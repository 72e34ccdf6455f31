"""The playground on a bucketed artifact: each run says which bucket served it, and its outputs equal
eager PyTorch's on the unpadded tokens (token classification: outputs along the sequence). Budget: < 30 s."""

import pytest

from neuron_export import ExportOptions, export
from neuron_export.demo import default_demo_root
from studio import playground


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("playground-buckets") / "ner"
    export("demo:tiny-bert-ner", folder, ExportOptions(backend="torchscript", sequence_length=(8, 32)))
    return playground.load(folder, default_demo_root())


@pytest.mark.parametrize("text, bucket", [("John lives in Paris", "8"), ("John and Mary live in Paris, far from the sea and the hills", "32")])
def test_each_run_names_its_bucket_and_matches_eager(loaded, text, bucket):
    segments, stats = playground.tag_tokens(loaded, text)
    assert "".join(segment.text for segment in segments) == text
    assert f"Served by the sequence length {bucket} bucket (compiled: 8, 32)." in stats.notes
    assert stats.max_abs_diff is not None and stats.max_abs_diff < 1e-4  # compared at the call's own length
