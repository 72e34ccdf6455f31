"""Bucketed exports: one eager module traced and compiled at several static shapes into one folder.

Planning: the shape options that hold several values (bucketing.py) become a list of buckets, one
value per bucketed option each, checked against what the registry marks as bucketable for the model
(registry BucketAxes). A component is bucketed when its input shapes differ between the buckets
(the UNet and VAE of a pipeline, not its text encoders).

Building: the module is loaded once and traced and compiled per bucket; the backend saves the
buckets together (sharing weights where its format allows); each bucket is validated on fresh
inputs of its own shape; the manifest lists every bucket with its verdict and compile time.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from ..artifact import VALIDATION_REPORT, BucketRecord, Bucketing, Manifest, TensorSpec, Validation, load_artifact, write_json
from ..bucketing import is_multi, parse_auto, propose_buckets
from ..errors import NeuronExportError
from ..options import ExportOptions
from ..progress import Progress
from ..registry import PAD, BucketAxes
from ..validation import ValidationReport, compare, merge_reports

log = logging.getLogger("neuron_export")


@dataclass
class ComponentBucket:
    """One static shape of a bucketed component."""

    name: str  # "32", "64x64": its values of the bucketed axes, joined
    shapes: dict[str, int]  # its values of the component's bucketed input axes
    example: dict[str, torch.Tensor]
    validation_inputs: list[dict[str, torch.Tensor]]


@dataclass
class BucketPlan:
    """A component's buckets (smallest first) and how calls will meet them."""

    fit: str  # registry PAD | EXACT
    axes: list[str]  # the component's input axes whose size differs between buckets
    buckets: list[ComponentBucket]
    pad_values: dict[str, float]  # per input: what pads it up to a larger bucket


# ---- planning --------------------------------------------------------------------------------------


@dataclass
class PlannedShapes:
    """The resolved shapes of an export: one set per bucket (one set without buckets)."""

    per_bucket: list[dict[str, int]]  # smallest first
    warnings: list[str]
    group: Optional[BucketAxes] = None  # the bucketed shape options, when several values were given

    @property
    def largest(self) -> dict[str, int]:
        return self.per_bucket[-1]

    @property
    def buckets(self) -> list[dict[str, int]]:
        """Each bucket's values of the bucketed shape options ([] without buckets)."""
        return [{axis: shapes[axis] for axis in self.group.axes} for shapes in self.per_bucket] if self.group else []

    @property
    def fit(self) -> Optional[str]:
        return self.group.fit if self.group else None

    def settle(self, options: ExportOptions) -> ExportOptions:
        """The options as compiled: the bucketed ones list every bucket's value (auto ones resolved)."""
        if not self.group:
            return options
        return options.replace(**{axis: tuple(shapes[axis] for shapes in self.per_bucket) for axis in self.group.axes})


def plan_shapes(groups: tuple[BucketAxes, ...], options: ExportOptions, used_axes: list[str], what: str,
                resolve: Callable[[ExportOptions], tuple[dict[str, int], list[str]]]) -> PlannedShapes:
    """resolve(options) -> (shapes, warnings) once per bucket of the shape options (or once)."""
    option_buckets, group = option_buckets_of(groups, options, used_axes, what)
    resolved = [resolve(options.replace(**bucket)) for bucket in option_buckets] or [resolve(options)]
    return PlannedShapes([shapes for shapes, _ in resolved], resolved[-1][1], group)


def option_buckets_of(groups: tuple[BucketAxes, ...], options: ExportOptions, used_axes: list[str], what: str
                      ) -> tuple[list[dict[str, int]], Optional[BucketAxes]]:
    """The option values of each bucket (smallest first; [] for a single static shape) and their group."""
    multi = {name: value for name, value in options.shapes().items() if is_multi(value) and name in used_axes}
    if not multi:
        if options.length_histogram:
            raise NeuronExportError("--length_histogram picks the buckets of an auto shape option, e.g. --sequence_length auto:16-512")
        return [], None
    group = next((g for g in groups if set(multi) & set(g.axes)), None)
    if group is None or set(multi) - set(group.axes):
        name = sorted(set(multi) - set(group.axes if group else ()))[0]
        bucketable = ", ".join(f"--{axis}" for g in groups for axis in g.axes) or "none"
        raise NeuronExportError(f"--{name} takes one value for {what}; the shape options it can bucket: {bucketable}")
    columns = {axis: _bucket_values(axis, getattr(options, axis), group, options) for axis in group.axes}
    count = max(len(values) for values in columns.values())
    if any(len(values) not in (1, count) for values in columns.values()):
        given = " and ".join(f"--{axis} {len(values)}" for axis, values in columns.items())
        raise NeuronExportError(f"{given} values: several bucketed options pair by position, so give as many of each (or one)")
    buckets = [{axis: values[i if len(values) > 1 else 0] for axis, values in columns.items() if values[0] is not None}
               for i in range(count)]
    unique = {tuple(sorted(b.items())): b for b in buckets}
    if len(unique) != len(buckets):
        raise NeuronExportError(f"{', '.join('--' + a for a in group.axes)}: a bucket is listed twice")
    ordered = sorted(unique.values(), key=lambda b: (_size(b), tuple(b.values())))
    log.info("Buckets: %s (%s)", ", ".join(bucket_label(b) for b in ordered),
             "each call runs on the smallest that fits" if group.fit == PAD else "each call on the one of its size")
    return ordered, group


def _bucket_values(axis: str, value: Any, group: BucketAxes, options: ExportOptions) -> list[Optional[int]]:
    if isinstance(value, str):
        auto = parse_auto(f"--{axis}", value)
        if group.fit != PAD or len(group.axes) > 1:
            raise NeuronExportError(f"--{axis} {value}: auto buckets are lengths to pad to; list the sizes to compile instead")
        values, said = propose_buckets(f"--{axis}", auto, options.length_histogram)
        log.info("%s", said)
        return list(values)
    if options.length_histogram:
        raise NeuronExportError(f"--length_histogram picks buckets for --{axis} auto:LOW-HIGH; --{axis} lists them already")
    return list(value) if isinstance(value, tuple) else [value]


def _size(bucket: dict[str, Any]) -> int:
    size = 1
    for value in bucket.values():
        size *= value
    return size


def bucket_label(values: dict[str, Any]) -> str:
    return " ".join(f"{axis}={value}" for axis, value in values.items())


def component_bucket_axes(axes_by_input: dict[str, tuple[str, ...]], shapes_per_bucket: list[dict[str, int]]) -> list[str]:
    """The input axes of a component whose size differs between buckets ([]: compiled once)."""
    used = list(dict.fromkeys(axis for axes in axes_by_input.values() for axis in axes))
    return [axis for axis in used if len({shapes[axis] for shapes in shapes_per_bucket}) > 1]


def bucket_name(axes: list[str], shapes: dict[str, int]) -> str:
    return "x".join(str(shapes[axis]) for axis in axes)


# ---- building --------------------------------------------------------------------------------------


def build_bucketed_component(component, plan, folder: Path, progress: Progress, module: torch.nn.Module) -> tuple[Manifest, Optional[ValidationReport]]:
    """Trace and compile every bucket of `component` (module: prepared for the backend), save them
    together, then validate each; the manifest lists them."""
    compiled, compile_s = {}, {}
    for bucket in component.bucketing.buckets:
        compiled[bucket.name], compile_s[bucket.name] = compile_one_bucket(component, plan, bucket, progress, module)
    return save_bucketed_component(component, plan, folder, progress, compiled, compile_s)


def compile_one_bucket(component, plan, bucket: ComponentBucket, progress: Progress, module: torch.nn.Module) -> tuple[Any, float]:
    """Trace and compile `component` at one bucket: (Backend.compile_bucket's result, seconds). A unit
    of its own, so an executor can spread a component's buckets over workers."""
    from .build import compile_errors

    backend, options = plan.backend, component.options or plan.options
    label = f"{component.name} [{bucket_label(bucket.shapes)}]"
    example = tuple(bucket.example[name].to(options.device) for name in component.input_names)
    start = time.perf_counter()
    with compile_errors(backend, label), component.compile_context():
        with progress.stage("tracing", f"Tracing {label} ({backend.name})", key=f"{component.name}.{bucket.name}.tracing"):
            traced = backend.trace(module, example, options)
        with progress.stage("compiling", f"Compiling {label} ({backend.name}, -O{options.optlevel})",
                            key=f"{component.name}.{bucket.name}.compiling"):
            compiled = backend.compile_bucket(traced, example, options, _workdir(options, component.name, bucket.name),
                                              component.model_kind)
    return compiled, time.perf_counter() - start


def save_bucketed_component(component, plan, folder: Path, progress: Progress, compiled: dict[str, Any],
                            compile_s: dict[str, float]) -> tuple[Manifest, Optional[ValidationReport]]:
    """Save the compiled buckets of `component` together into `folder`, then validate each."""
    from .build import compile_errors, component_manifest

    backend, options, buckets = plan.backend, component.options or plan.options, component.bucketing
    output_axes = _output_axes(component) if buckets.fit == PAD else {}
    with progress.stage("saving", f"Saving {component.name} ({len(compiled)} buckets)", key=f"{component.name}.saving"):
        with compile_errors(backend, component.name):
            saved = backend.save_buckets(compiled, folder, options)
        log.info("Weights: %s", saved.weights_note)
        manifest = component_manifest(component, plan)
        manifest.model_file = saved.model_file
        manifest.inputs = _specs(component, component.example, buckets.pad_values)
        manifest.buckets = [BucketRecord(b.name, b.shapes, _specs(component, b.example, buckets.pad_values), saved.locations[b.name],
                                         Validation(skipped=manifest.validation.skipped), compile_s[b.name]) for b in buckets.buckets]
        manifest.bucketing = Bucketing(buckets.axes, buckets.fit, output_axes, saved.shared_weights, saved.weights_note)
        # the file holding every bucket, or (a file per bucket, neuron) the first bucket's: they are built alike
        backend.annotate_manifest(manifest, options, folder / (saved.model_file or saved.locations[buckets.buckets[0].name]))
        manifest.write(folder)
    if not any(b.validation_inputs for b in buckets.buckets):
        return manifest, None
    return manifest, _validate(component, manifest, folder, progress)


def _validate(component, manifest: Manifest, folder: Path, progress: Progress) -> ValidationReport:
    """Each bucket on fresh inputs of its own shape against the eager module; one merged report."""
    model = load_artifact(folder)
    reports = []
    for bucket, record in zip(component.bucketing.buckets, manifest.buckets):
        label = f"{component.name} [{bucket_label(bucket.shapes)}]"
        with progress.stage("validating", f"Validating {label} against eager PyTorch", key=f"{component.name}.{bucket.name}.validating"):
            report = compare(label, component.module, component.output_names, model.bucket_model(bucket.name),
                             bucket.validation_inputs, component.atol, component.atol_source)
        for line in report.log_lines():
            log.info("%s", line)
        record.validation = Validation(passed=report.passed, atol=report.atol)
        reports.append(report)
    merged = merge_reports(component.name, reports)
    write_json(folder / VALIDATION_REPORT, merged.to_dict())
    manifest.validation = Validation(passed=merged.passed, atol=merged.atol)
    manifest.write(folder)
    return merged


def _specs(component, example: dict[str, torch.Tensor], pad_values: dict[str, float]) -> list[TensorSpec]:
    return [TensorSpec(name, list(example[name].shape), str(example[name].dtype).removeprefix("torch."), list(component.axes[name]),
                       pad_values.get(name), component.value_ranges.get(name)) for name in component.input_names]


def _output_axes(component) -> dict[str, list[Optional[str]]]:
    """Per output, the bucketed axis of each dimension, from the eager outputs at every bucket: the
    dimensions whose size is the bucket's value of an axis in every bucket (what unpadding cuts)."""
    buckets = component.bucketing.buckets
    shapes = []
    with torch.no_grad():
        for bucket in buckets:
            outputs = component.module(*(bucket.example[name] for name in component.input_names))
            shapes.append([tuple(t.shape) for t in outputs])
    axes: dict[str, list[Optional[str]]] = {}
    for index, name in enumerate(component.output_names):
        dims: list[Optional[str]] = []
        for dim in range(len(shapes[0][index])):
            sizes = [bucket_shapes[index][dim] for bucket_shapes in shapes]
            matching = [a for a in component.bucketing.axes if all(size == b.shapes[a] for size, b in zip(sizes, buckets))]
            if len(set(sizes)) > 1 and not matching:
                raise NeuronExportError(
                    f"output {name!r} of {component.name} changes size with the buckets ({sizes}) in a way that unpadding cannot undo; "
                    "export it with one shape"
                )
            dims.append(matching[0] if len(set(sizes)) > 1 else None)
        axes[name] = dims
    return axes


def _workdir(options: ExportOptions, component: str, bucket: str) -> Optional[Path]:
    if options.compiler_workdir_path is None:
        return None
    workdir = options.compiler_workdir_path / component / bucket
    workdir.mkdir(parents=True, exist_ok=True)
    return workdir


def pipeline_buckets(plan, manifests: dict[str, Manifest]) -> tuple[list[BucketRecord], Optional[Bucketing]]:
    """A pipeline's buckets (its resolutions): per bucket, the verdict of every bucketed component at
    it and their summed compile times."""
    if not plan.buckets:
        return [], None
    bucketed = [m for m in manifests.values() if m.is_bucketed]
    records = []
    for index, values in enumerate(plan.buckets):
        parts = [m.buckets[index] for m in bucketed]
        verdicts = [p.validation.passed for p in parts]
        validation = Validation(passed=all(verdicts)) if None not in verdicts else Validation(skipped=plan.skip_reason)
        records.append(BucketRecord("x".join(str(v) for v in values.values()), dict(values), validation=validation,
                                    compile_s=sum(p.compile_s or 0.0 for p in parts)))
    return records, Bucketing(list(plan.buckets[0]), plan.bucket_fit)


def bucket_plan(axes_by_input: dict[str, tuple[str, ...]], shapes_per_bucket: list[dict[str, int]], fit: str,
                inputs_for, pad_values: dict[str, float]) -> Optional[BucketPlan]:
    """A component's BucketPlan, or None when its inputs are the same at every bucket (compiled once);
    inputs_for(shapes) gives a bucket's example and validation inputs."""
    axes = component_bucket_axes(axes_by_input, shapes_per_bucket)
    if not axes:
        return None
    buckets = []
    for shapes in shapes_per_bucket:
        example, validation_inputs = inputs_for(shapes)
        buckets.append(ComponentBucket(bucket_name(axes, shapes), {axis: shapes[axis] for axis in axes}, example, validation_inputs))
    return BucketPlan(fit, axes, buckets, pad_values)
