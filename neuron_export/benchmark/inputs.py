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


def pipeline_inputs(manifest: Manifest, batch_size: int, steps: int, seed: int) -> dict[str, Any]:
    """A pipeline call: batch_size prompts, the compiled images per prompt, `steps` steps, NumPy images out, and
    what the artifact's pipeline takes besides (requests.example_request: init image, mask, control images,
    strength, guidance)."""
    from ..diffusion.requests import artifact_pipeline_spec, example_request
    from ..registry.diffusion import components_of

    shapes = manifest.shapes
    controlnets = sum(spec.kind == "controlnet" for spec in components_of(manifest.task, manifest.components))
    request = example_request(artifact_pipeline_spec(manifest), shapes["height"], shapes["width"], steps, seed,
                              controlnets=controlnets)
    del request["generator"]  # each side makes its own from the seed, per call
    return {
        **request,
        "prompt": [f"a photograph of an astronaut riding a horse, variation {i}" for i in range(batch_size)],
        "num_images_per_prompt": shapes["num_images_per_prompt"],
        "output_type": "np",
        "seed": seed,
    }
