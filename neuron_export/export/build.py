"""Carry out an ExportPlan: trace, compile, save and validate each component in a staging folder,
then publish the artifact in one rename (artifact/folders.py)."""

from __future__ import annotations

import copy
import dataclasses
import datetime
import logging
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import torch

from ..version import __version__
from ..artifact.folders import WRITE_ERRNOS
from ..artifact import VALIDATION_REPORT, Manifest, TensorSpec, Validation, load_artifact, write_json
from ..errors import NeuronExportError, first_line
from ..model_files import contained_files
from ..progress import Progress
from ..sources import untrained_warning
from ..validation import ValidationReport, compare
from .buckets import build_bucketed_component, pipeline_buckets
from .plan import Component, ExportPlan

log = logging.getLogger("neuron_export")

# Files of a model folder that are not copied into the artifact (the compiled model replaces them).
SKIPPED_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx", ".md")


def build_components(plan: ExportPlan, staging: Path, progress: Progress) -> tuple[dict[str, Manifest], list[ValidationReport]]:
    """Every component of the plan, each into its folder of `staging`, one component's weights at a time."""
    manifests, reports = {}, []
    for component_plan in plan.components:
        folder = staging / component_plan.folder
        folder.mkdir(exist_ok=True)  # "" for a single model: the staging folder itself
        progress.component = component_plan.folder or None  # the stage events' part of a pipeline; None: the model
        with progress.stage("loading", f"Loading {_loading_what(plan, component_plan.name)}", key=f"{component_plan.name}.loading"):
            component = component_plan.load()
        if component.bucketing is not None:
            manifests[component.name], report = build_bucketed_component(component, plan, folder, progress, prepare_module(component, plan))
        else:
            manifests[component.name], report = build_component(component, plan, folder, progress)
        if component_plan.config_file is not None:
            shutil.copy2(component_plan.config_file, folder / "config.json")
        reports += [report] if report else []
        del component  # its weights go before the next component loads
    return manifests, reports


def build_component(component: Component, plan: ExportPlan, folder: Path, progress: Progress) -> tuple[Manifest, Optional[ValidationReport]]:
    """Trace, compile, save and (unless the plan skips it) validate one component into `folder`."""
    backend, options, label = plan.backend, component.options or plan.options, component.name
    example = tuple(component.example[n] for n in component.input_names)
    compiled_module = prepare_module(component, plan)
    device_example = tuple(t.to(options.device) for t in example)
    with compile_errors(backend, label), component.compile_context():
        with progress.stage("tracing", f"Tracing {label} ({backend.name})", key=f"{label}.tracing"):
            traced = backend.trace(compiled_module, device_example, options)
        with progress.stage("compiling", f"Compiling {label} ({backend.name}, -O{options.optlevel})", key=f"{label}.compiling"):
            workdir = options.compiler_workdir_path
            if workdir is not None:
                workdir = workdir / label
                workdir.mkdir(parents=True, exist_ok=True)
            backend.compile(traced, device_example, options, folder / backend.model_file, workdir, component.model_kind,
                            state_inputs=len(component.state_inputs), data_parallel=component.data_parallel)

    with progress.stage("saving", f"Saving {label}", key=f"{label}.saving"):
        manifest = component_manifest(component, plan)
        backend.annotate_manifest(manifest, options, folder / backend.model_file)
        manifest.write(folder)

    report = None
    if component.validation_inputs or component.check:
        with progress.stage("validating", f"Validating {label} against eager PyTorch", key=f"{label}.validating"):
            if component.check:
                report = component.check(folder)
            else:
                report = compare(label, component.module, component.output_names, load_artifact(folder),
                                 component.validation_inputs, component.atol, component.atol_source)
            for line in report.log_lines():
                log.info("%s", line)
            write_json(folder / VALIDATION_REPORT, report.to_dict())
            manifest.validation = Validation(passed=report.passed, atol=report.atol)
            manifest.write(folder)
    return manifest, report


def prepare_module(component: Component, plan: ExportPlan) -> torch.nn.Module:
    """The component's module as the backend compiles it (cast, on its device)."""
    module, options = component.module, component.options or plan.options
    if options.auto_cast != "none" or options.device != "cpu":
        # prepare() casts / moves in place; the validation reference must stay fp32 on CPU.
        module = copy.deepcopy(component.module)
    return plan.backend.prepare(module, options)


@contextmanager
def compile_errors(backend, label: str) -> Iterator[None]:
    """A compiler's failure as one line naming the backend and what it compiled."""
    try:
        yield
    except NeuronExportError:
        raise
    except Exception as error:
        if isinstance(error, OSError) and error.errno in WRITE_ERRNOS:
            raise  # a full or read-only disk, not a compiler problem: export() says so
        raise NeuronExportError(f"{backend.name} could not compile {label}: {first_line(error)}") from None


def component_manifest(component: Component, plan: ExportPlan) -> Manifest:
    backend, options = plan.backend, component.options or plan.options  # a component may have its own (the SD VAE: fp32)
    return Manifest(
        tool=f"neuron_export {__version__}",
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        source=plan.source.origin,
        library=plan.source.library,
        model_type=plan.source.model_type,  # a diffusers source's model type is its task
        task=plan.task,
        shapes=plan.shapes if not plan.pipeline_class else plan.public_shapes,
        warnings=plan.warnings + ([untrained_warning(plan.source.origin, plan.task, component.untrained_weights)]
                                  if component.untrained_weights else []),
        component=component.name,
        backend=backend.name,
        backend_reason=plan.backend_reason,
        is_neuron=backend.is_neuron,
        device=backend.device(options),
        target=backend.target(options),
        runs_on=backend.runs_on(options),
        torch_version=torch.__version__,
        cpu_capability=torch.backends.cpu.get_cpu_capability(),
        neuron_cores=backend.cores(component.data_parallel),
        compiler=backend.compiler_version(),
        model_file=backend.model_file,
        inputs=[
            TensorSpec(n, list(component.example[n].shape), str(component.example[n].dtype).removeprefix("torch."), list(component.axes[n]),
                       state=n in component.state_inputs, value_range=component.value_ranges.get(n))
            for n in component.input_names
        ],
        outputs=component.output_names,
        dynamic_batch=options.dynamic_batch_size,
        auto_cast=options.auto_cast,
        auto_cast_type=options.auto_cast_type if options.auto_cast != "none" else None,
        optlevel=options.optlevel,
        options=options,
        validation=Validation(skipped=plan.skip_reason or "--disable-validation"),
        untrained_weights=component.untrained_weights,
        loras=plan.loras,
    )


def artifact_manifest(plan: ExportPlan, manifests: dict[str, Manifest], reports: list[ValidationReport], timings: dict[str, float]) -> Manifest:
    """The artifact's manifest: the component's own for a single model, else the pipeline's root manifest."""
    if not plan.pipeline_class:
        manifest = next(iter(manifests.values()))
        manifest.timings = timings
        return manifest
    first = next(iter(manifests.values()))
    if plan.validate:
        validation = Validation(passed=all(r.passed for r in reports), components={r.component: r.passed for r in reports})
    else:
        validation = Validation(skipped=plan.skip_reason)
    buckets, bucketing = pipeline_buckets(plan, manifests)
    pipeline_fields = dict(component=None, model_file=None, inputs=[], outputs=[], cpu_capability=None,
                           neuron_cores=sorted({core for m in manifests.values() for core in m.neuron_cores}),
                           pipeline_class=plan.pipeline_class, components=list(manifests), validation=validation, timings=timings,
                           buckets=buckets, bucketing=bucketing,
                           untrained_weights=[f"{name}/{w}" for name, m in manifests.items() for w in m.untrained_weights])
    return dataclasses.replace(first, **pipeline_fields)


def copy_model_files(source: Path, destination: Path) -> None:
    """Config, tokenizer, preprocessor and sentence-transformers files: everything but weights (and
    never a file that a symlink places outside the model folder: model_files.contained_files)."""
    if source.is_file():
        shutil.copy2(source, destination)
        return
    for path in contained_files(source):
        relative = path.relative_to(source)
        if path.suffix in SKIPPED_SUFFIXES or any(p.startswith(".") for p in relative.parts):
            continue
        target = destination / relative
        if target.exists():
            continue  # never overwrite what the export wrote (manifest.json, ...)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)


def _loading_what(plan: ExportPlan, component: str) -> str:
    return f"{component} of {plan.source.origin}" if plan.pipeline_class else f"{plan.source.origin} for {plan.task}"
