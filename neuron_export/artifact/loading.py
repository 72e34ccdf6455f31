"""Loading a compiled model safely.

A compiled model (AOTInductor package, traced TorchScript or Neuron module) runs whatever it is
given: a wrong shape or a stride-0 tensor returns garbage silently. CompiledModel checks every
call against the manifest, makes inputs contiguous and places them, so callers never get that.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..backends import get_backend
from ..errors import ArtifactError, InputMismatchError, NeuronExportError, first_line
from .buckets import BucketedModel
from .folders import inside
from .manifest import Manifest, TensorSpec


class CompiledModel:
    """A loaded artifact: call with named tensors, get a dict of named output tensors."""

    def __init__(self, path: Path, manifest: Manifest, runner, native_dynamic_batch: bool):
        self.path = path
        self.manifest = manifest
        self._runner = runner
        self._native_dynamic_batch = native_dynamic_batch
        self.inputs: dict[str, TensorSpec] = {spec.name: spec for spec in manifest.inputs}
        self.input_names = list(self.inputs)
        self.output_names: list[str] = list(manifest.outputs)
        self.device = torch.device(manifest.device)
        self.dynamic_batch = manifest.dynamic_batch
        self.batch_size = manifest.batch_size
        # Where a Neuron runner was placed: a data-parallel one takes its compiled batch once per copy.
        self.cores: list[int] = list(getattr(runner, "cores", []))
        self.replicas: int = getattr(runner, "replicas", 1)
        self.call_batch = self.batch_size * self.replicas
        # One static shape: no buckets (a bucketed artifact loads as a BucketedModel).
        self.buckets: list[dict[str, int]] = []
        self.bucketed_axes: tuple[str, ...] = ()
        self.last_bucket = None

    def __call__(self, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        tensors = self.prepare(inputs)
        batch = tensors[0].shape[0]
        if self.dynamic_batch and not self._native_dynamic_batch and batch != self.batch_size:
            return self._run_in_chunks(tensors, batch)
        if not self.dynamic_batch and self.replicas > 1 and batch < self.call_batch:
            padded = self._run([_pad_rows(t, self.call_batch - batch) for t in tensors])  # every copy gets a full batch
            return {name: output[:batch] for name, output in padded.items()}
        return self._run(tensors)

    def prepare(self, inputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Check names, shapes and dtypes against the compiled signature; contiguous, on the device."""
        missing = [n for n in self.input_names if n not in inputs]
        extra = [n for n in inputs if n not in self.inputs]
        if missing or extra:
            raise InputMismatchError(
                f"inputs {sorted(inputs)} do not match the compiled inputs {self.input_names}"
                + (f" (missing {missing})" if missing else "")
                + (f" (unexpected {extra})" if extra else "")
            )
        prepared = []
        batches: dict[str, set[int]] = {}  # per batch axis: CLIP's texts and images have one each
        for name in self.input_names:
            spec, tensor = self.inputs[name], inputs[name]
            _check_tensor(name, tensor)
            compiled = tuple(spec.shape)
            shape = tuple(tensor.shape)
            rows_ok = shape[:1] == compiled[:1] or (
                bool(shape) and 0 < shape[0] and (self.dynamic_batch or (self.replicas > 1 and shape[0] <= self.call_batch)))
            ok = shape == compiled or (rows_ok and len(shape) == len(compiled) and shape[1:] == compiled[1:])
            if not ok:
                hint = "any batch size, " if self.dynamic_batch else f"up to {self.call_batch} rows on {self.replicas} cores, " if self.replicas > 1 else ""
                raise InputMismatchError(
                    f"input {name!r} has shape {shape}; the model was compiled for {compiled} ({hint}pad to the compiled shape)"
                )
            batches.setdefault(spec.axes[0] if spec.axes else "", set()).add(shape[0])
            tensor = _convert_dtype(name, tensor, getattr(torch, spec.dtype))
            _check_range(name, tensor, spec.value_range)
            prepared.append(tensor.to(self.device).contiguous())
        for sizes in batches.values():
            if len(sizes) > 1:
                raise InputMismatchError(f"inputs have different batch sizes {sorted(sizes)}")
        return prepared

    def _run(self, tensors: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        outputs = self._runner(*tensors)
        if isinstance(outputs, torch.Tensor):
            outputs = (outputs,)
        if len(outputs) != len(self.output_names):
            raise ArtifactError(f"the compiled model returned {len(outputs)} outputs, its manifest lists {len(self.output_names)}")
        return dict(zip(self.output_names, outputs))

    def _run_in_chunks(self, tensors: list[torch.Tensor], batch: int) -> dict[str, torch.Tensor]:
        """Dynamic batch for backends whose compiled model has a fixed batch: run compiled-size
        chunks, padding the last one by repeating its final row, then drop the padding."""
        size = self.batch_size
        results: list[dict[str, torch.Tensor]] = []
        for start in range(0, batch, size):
            chunk = [t[start : start + size] for t in tensors]
            short = size - chunk[0].shape[0]
            if short:
                chunk = [_pad_rows(c, short) for c in chunk]
            results.append(self._run(chunk))
        return {name: torch.cat([r[name] for r in results])[:batch] for name in self.output_names}


def _pad_rows(tensor: torch.Tensor, rows: int) -> torch.Tensor:
    """The tensor with its last row repeated `rows` more times (padding that the caller drops again)."""
    return torch.cat([tensor, tensor[-1:].expand(rows, *tensor.shape[1:])]).contiguous()
def _check_tensor(name: str, tensor) -> None:
    """A real, dense tensor: a meta tensor has no values and a sparse one is not what was compiled."""
    if not isinstance(tensor, torch.Tensor):
        raise InputMismatchError(f"input {name!r} must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.is_meta:
        raise InputMismatchError(f"input {name!r} is a meta tensor (a shape without values); pass real values")
    if tensor.layout != torch.strided:
        raise InputMismatchError(f"input {name!r} is a {tensor.layout} tensor; pass a dense one (tensor.to_dense())")


def _convert_dtype(name: str, tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Lossless-in-practice conversions within a kind (int32 ids -> int64, float64 -> float32); never
    float <-> int, and never complex, bool or unsigned (uint8 masks once meant something else)."""
    if tensor.dtype == dtype:
        return tensor
    signed_int = not tensor.is_floating_point() and not tensor.is_complex() and tensor.dtype.is_signed
    if (tensor.is_floating_point() != dtype.is_floating_point or tensor.is_complex()
            or not (tensor.is_floating_point() or signed_int)):
        raise InputMismatchError(f"input {name!r} has dtype {tensor.dtype}; the model was compiled for {dtype}")
    return tensor.to(dtype)


def _check_range(name: str, tensor: torch.Tensor, value_range) -> None:
    """Values within the range the manifest gives (token ids below the vocabulary size, ...): out
    of range, a compiled model fails deep inside (or reads other memory) instead of saying so."""
    if value_range is None or tensor.numel() == 0:
        return
    low, high = value_range
    lowest, highest = int(tensor.min()), int(tensor.max())
    if lowest < low or highest > high:
        raise InputMismatchError(f"input {name!r} holds values from {lowest} to {highest}; the model takes {low} to {high}")


def load_artifact(path: str | Path) -> CompiledModel | BucketedModel:
    """Load a compiled artifact, refusing clearly when this host cannot run it."""
    path = Path(path)
    manifest = Manifest.read(path)
    if manifest.is_pipeline:
        from ..registry import DIFFUSION_TASKS

        task = DIFFUSION_TASKS.get(manifest.task)
        classes = " / ".join(p.class_name for p in task.pipelines) if task else "its pipeline class"
        raise ArtifactError(
            f"{path} is a compiled {manifest.task} pipeline of {len(manifest.components)} components; load it with "
            f"neuron_export.{classes}, or one component with load_artifact({str(path / manifest.components[0])!r})"
        )
    try:
        backend = get_backend(manifest.backend)
    except NeuronExportError as error:  # made by a newer tool, or a hand-edited manifest
        raise ArtifactError(f"cannot run {path} here: {error}") from None
    problem = backend.runtime_problem(manifest)
    if problem:
        raise ArtifactError(f"cannot run {path} here: {problem}")
    files = [manifest.model_file] if manifest.model_file else [bucket.location for bucket in manifest.buckets]
    absent = [name for name in files if not inside(path, name).is_file()]
    if absent:
        raise ArtifactError(f"{path} is incomplete: {', '.join(absent)} {'is' if len(absent) == 1 else 'are'} missing")
    try:
        if manifest.is_bucketed:
            return BucketedModel(path, manifest, backend.load_buckets(path, manifest), backend.native_dynamic_batch)
        runner = backend.load(inside(path, manifest.model_file), manifest)
    except NeuronExportError:
        raise
    except Exception as error:
        raise ArtifactError(f"cannot load {path / files[0]}: {first_line(error)}") from None
    return CompiledModel(path, manifest, runner, backend.native_dynamic_batch)
