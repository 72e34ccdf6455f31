"""What every side of a benchmark is called with: the same inputs, generated once by the parent."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional

from ..artifact import Manifest
from ..errors import ArtifactError
from ..inputs import make_inputs
from ..model_files import read_json
from ..registry import get_architecture
from ..sources import ModelSource


def benchmark_inputs(manifest: Manifest, artifact: Path, batch_size: int, seed: int, axis_sizes: Optional[dict[str, int]] = None) -> dict[str, Any]:
    """Inputs of the artifact's signature at `batch_size`, like a tokenizer's batch (padded masks);
    axis_sizes: other sizes of some axes (e.g. the sequence_length of a bucketed artifact's call)."""
    specs = {spec.name: spec for spec in get_architecture(manifest.model_type).inputs}
    # Only the axes named here change (CLIP's text and image batches stay as compiled).
    sizes = {**(axis_sizes or {}), "batch_size": batch_size}
    shapes = {spec.name: tuple(sizes.get(axis, size) for axis, size in zip(spec.axes, spec.shape)) for spec in manifest.inputs}
    unknown = sorted(set(shapes) - set(specs))
    if unknown:
        raise ArtifactError(f"{artifact}'s manifest lists inputs a {manifest.model_type} model does not take: {', '.join(unknown)}")
    config_file = ModelSource(str(artifact), artifact, manifest.library, {}).encoder_path / "config.json"
    config = SimpleNamespace(**read_json(config_file)) if config_file.is_file() else SimpleNamespace()
    tensors = make_inputs([specs[name] for name in shapes], shapes, config, seed=seed, realistic=True)
    return {name: tensor.numpy() for name, tensor in tensors.items()}
