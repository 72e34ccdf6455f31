"""A loaded artifact with several static shapes (buckets): each call runs on the smallest one that fits.

The manifest says how calls meet buckets (Bucketing.fit): "pad" inputs go to the smallest bucket at
least as large along the bucketed axes, padded with each input's pad value (masked tokens), and the
padding is cut from the outputs again; "exact" inputs (image resolutions) must be the size of a
bucket. Each bucket is a CompiledModel of its own (loaded when first used, as the backend decides),
which checks shapes, dtypes and the batch (dynamic batch first, then the bucket's length).
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Callable, Optional

import torch

from ..errors import ArtifactError, InputMismatchError, NeuronExportError, first_line
from ..registry import PAD
from .manifest import BucketRecord, Manifest, TensorSpec


class BucketedModel:
    """Called like a CompiledModel: named tensors in, a dict of named output tensors out."""

    def __init__(self, path: Path, manifest: Manifest, loaders: dict[str, Callable], native_dynamic_batch: bool):
        from .loading import CompiledModel

        self._compiled_model = CompiledModel
        self.path = path
        self.manifest = manifest
        self.records: list[BucketRecord] = list(manifest.buckets)  # smallest first
        self.fit = manifest.bucketing.fit
        self.bucketed_axes: tuple[str, ...] = tuple(manifest.bucketing.axes)
        self._output_axes = manifest.bucketing.outputs
        self._loaders = loaders
        self._native_dynamic_batch = native_dynamic_batch
        self._models: dict = {}
        self._lock = threading.Lock()
        # The largest bucket's signature: what callers that pad themselves (model classes) size against.
        self.inputs: dict[str, TensorSpec] = {spec.name: spec for spec in self.records[-1].inputs}
        self.input_names = list(self.inputs)
        self.output_names: list[str] = list(manifest.outputs)
        self.device = torch.device(manifest.device)
        self.dynamic_batch = manifest.dynamic_batch
        self.batch_size = manifest.batch_size
        self.last_bucket: Optional[str] = None  # the bucket that served the latest call

    @property
    def buckets(self) -> list[dict[str, int]]:
        """The compiled shapes, smallest first, e.g. [{"sequence_length": 32}, {"sequence_length": 64}]."""
        return [dict(record.shapes) for record in self.records]

    # Where the buckets run, and how many rows one call takes: the same for every bucket (one backend
    # placed them all), read from a loaded bucket, else from the largest (it serves calls of any size).
    @property
    def cores(self) -> list[int]:
        return self._placed().cores

    @property
    def replicas(self) -> int:
        return self._placed().replicas

    @property
    def call_batch(self) -> int:
        return self._placed().call_batch

    def _placed(self):
        return next(iter(self._models.values()), None) or self.bucket_model(self.records[-1].name)

    def largest_only(self) -> "BucketedModel":
        """The same model as if only its largest bucket had been compiled (every call padded to it)."""
        manifest = dataclasses.replace(self.manifest, buckets=self.records[-1:])
        return BucketedModel(self.path, manifest, self._loaders, self._native_dynamic_batch)

    def bucket_model(self, name: str):
        """The CompiledModel of one bucket (loaded on first use)."""
        with self._lock:
            if name not in self._models:
                record = next(r for r in self.records if r.name == name)
                manifest = dataclasses.replace(self.manifest, inputs=record.inputs, buckets=[], bucketing=None)
                try:
                    runner = self._loaders[name]()
                except NeuronExportError:
                    raise
                except Exception as error:  # a damaged file shows when its bucket is first used
                    raise ArtifactError(f"cannot load bucket {name} of {self.path}: {first_line(error)}") from None
                self._models[name] = self._compiled_model(self.path, manifest, runner, self._native_dynamic_batch)
            return self._models[name]

    def __call__(self, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        sizes = self.axis_sizes(inputs)
        record = self.select(sizes)
        padded = {name: self._pad(name, tensor, record) for name, tensor in inputs.items()}
        outputs = self.bucket_model(record.name)(**padded)
        self.last_bucket = record.name
        return {name: self._unpad(name, tensor, sizes) for name, tensor in outputs.items()}

    def axis_sizes(self, inputs: dict[str, torch.Tensor]) -> dict[str, int]:
        """The call's size along each bucketed axis, read from the inputs that have it (they must agree)."""
        sizes: dict[str, int] = {}
        for name, spec in self.inputs.items():
            tensor = inputs.get(name)
            if not isinstance(tensor, torch.Tensor) or tensor.dim() != len(spec.axes):
                continue  # the bucket's own checks name what is wrong
            for axis, size in zip(spec.axes, tensor.shape):
                if axis in self.bucketed_axes:
                    if sizes.setdefault(axis, size) != size:
                        raise InputMismatchError(f"the inputs disagree on {axis}: {sizes[axis]} and {size} ({name!r})")
        missing = [axis for axis in self.bucketed_axes if axis not in sizes]
        if missing:
            raise InputMismatchError(f"no input gives {', '.join(missing)}; the model takes {', '.join(self.input_names)}")
        return sizes

    def select(self, sizes: dict[str, int]) -> BucketRecord:
        """The smallest bucket that fits these sizes ("pad"), or the one of exactly these sizes ("exact")."""
        for record in self.records:
            values = [record.shapes[axis] for axis in self.bucketed_axes]
            wanted = [sizes[axis] for axis in self.bucketed_axes]
            if values == wanted or (self.fit == PAD and all(v >= w for v, w in zip(values, wanted))):
                return record
        asked = " x ".join(f"{axis} {sizes[axis]}" for axis in self.bucketed_axes)
        if self.fit == PAD:
            raise InputMismatchError(
                f"{asked} is more than the largest bucket; this model was compiled for {self.describe_buckets()}: "
                "shorten the input, or export again with a larger bucket"
            )
        raise InputMismatchError(f"{asked} is not a compiled size; this model was compiled for {self.describe_buckets()}")

    def describe_buckets(self) -> str:
        """The buckets in words, e.g. "sequence_length 32, 64, 128" or "latent_height x latent_width 64x64, 96x96"."""
        return f"{' x '.join(self.bucketed_axes)} {', '.join(record.name for record in self.records)}"

    def _pad(self, name: str, tensor: torch.Tensor, record: BucketRecord) -> torch.Tensor:
        spec = self.inputs.get(name)
        if self.fit != PAD or spec is None or not isinstance(tensor, torch.Tensor) or tensor.dim() != len(spec.axes):
            return tensor
        target = tuple(record.shapes.get(axis, size) for axis, size in zip(spec.axes, tensor.shape))
        if target == tuple(tensor.shape):
            return tensor
        padded = tensor.new_full(target, spec.pad or 0)
        padded[tuple(slice(0, size) for size in tensor.shape)] = tensor
        return padded

    def _unpad(self, name: str, tensor: torch.Tensor, sizes: dict[str, int]) -> torch.Tensor:
        axes = self._output_axes.get(name, [])
        index = tuple(slice(0, sizes[axis]) if axis in sizes else slice(None) for axis in axes[: tensor.dim()])
        return tensor[index] if any(part != slice(None) for part in index) else tensor
