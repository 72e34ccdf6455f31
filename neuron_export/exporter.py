"""export(): load -> trace -> compile -> save -> validate, into an atomically published artifact folder."""

from __future__ import annotations

import copy
import datetime
import logging
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import torch

from . import __version__
from .artifact import MANIFEST, VALIDATION_REPORT, check_output_dir, load_artifact, publish, staging_dir, write_json
from .backends import Backend, choose_backend
from .cache import CompileCache
from .errors import NeuronExportError, first_line
from .inputs import input_axes, input_shapes, make_inputs, resolve_shapes, validation_input_sets
from .options import ExportOptions
from .registry import SENTENCE_TRANSFORMERS_OUTPUTS, check_task, detect_task, get_architecture
from .sources import ModelSource, load_config, load_eager_model, resolve_model_source, sentence_transformers_modules
from .traceable import SentenceEmbeddingModel, TraceableModel, discover_output_names, sentence_transformers_head
from .validation import ValidationReport, compare

log = logging.getLogger("neuron_export")

EventSink = Callable[[dict[str, Any]], None]
COMPONENT_STAGES = ("tracing", "compiling", "saving", "validating")
# Default atol when auto-casting: low-precision matmuls cannot meet the fp32 tolerance.
CAST_ATOL = {"bf16": 5e-2, "fp16": 1e-2, "tf32": 5e-3}
# Files of a model folder that are not copied into the artifact (the compiled model replaces them).
SKIPPED_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx", ".md")


@dataclass
class ExportResult:
    artifact: Path
    manifest: dict[str, Any]
    reports: list[ValidationReport]
    timings: dict[str, float]
    warnings: list[str] = field(default_factory=list)
    cache_hit: bool = False

    @property
    def validation_passed(self) -> Optional[bool]:
        """True/False after validation, None when it was skipped."""
        return self.manifest.get("validation", {}).get("passed")


class Progress:
    """Stage events (for the job store) and timings; `total` is the number of stages expected."""

    def __init__(self, on_event: Optional[EventSink], total: int):
        self.on_event = on_event
        self.total = total
        self.done = 0
        self.timings: dict[str, float] = {}

    def emit(self, event: dict[str, Any]) -> None:
        if self.on_event is not None:
            self.on_event({**event, "time": time.time()})

    @contextmanager
    def stage(self, name: str, message: str, key: Optional[str] = None) -> Iterator[None]:
        self.emit({"type": "stage", "stage": name, "index": self.done + 1, "total": self.total,
                   "fraction": self.done / self.total, "message": message})
        log.info("[%d/%d] %s", self.done + 1, self.total, message)
        start = time.perf_counter()
        yield
        self.timings[key or name] = self.timings.get(key or name, 0.0) + time.perf_counter() - start
        self.done += 1


@dataclass
class Component:
    """One model to compile: the eager module (the validation reference) and its inputs."""

    name: str
    module: torch.nn.Module  # positional inputs -> tuple of outputs, fp32 on CPU
    input_names: list[str]
    output_names: list[str]
    axes: dict[str, tuple[str, ...]]
    example: dict[str, torch.Tensor]
    validation_inputs: list[dict[str, torch.Tensor]]
    atol: float
    atol_source: str
    model_kind: str = "generic"


def default_atol(family_atol: float, options: ExportOptions) -> tuple[float, str]:
    if options.atol is not None:
        return options.atol, "--atol"
    if options.auto_cast != "none":
        cast = options.auto_cast_type or "bf16"
        return max(family_atol, CAST_ATOL[cast]), f"default for --auto_cast {options.auto_cast} {cast}"
    return family_atol, "default for the model family"


def settle_options(options: ExportOptions, backend: Backend) -> tuple[ExportOptions, bool, Optional[str]]:
    """Defaults that depend on the choices made (the cast type), and whether validation can run here."""
    if options.auto_cast != "none" and options.auto_cast_type is None:
        options = options.replace(auto_cast_type="bf16")
    if options.disable_validation:
        return options, False, None
    if backend.name == "neuron" and options.instance_type:
        reason = f"compiled for {options.instance_type} on a host without a Neuron device: it cannot run here, so it was not validated"
        log.warning("Warning: %s", reason)
        return options, False, reason
    return options, True, None


def eager_traceable(source: ModelSource, eager: torch.nn.Module, input_names: list[str], output_names: list[str],
                    options: ExportOptions) -> torch.nn.Module:
    """The eager model with the traced signature: positional inputs -> tuple of the named outputs
    (for a sentence-transformers folder, with its pooling and normalization)."""
    if source.library == "sentence_transformers":
        pooling, normalize = sentence_transformers_head(sentence_transformers_modules(source.path), source.path)
        return SentenceEmbeddingModel(eager, input_names, pooling, normalize).eval()
    return TraceableModel(eager, input_names, output_names, **output_flags(options)).eval()


def output_flags(options: ExportOptions) -> dict[str, bool]:
    return {k: True for k in ("output_hidden_states", "output_attentions") if getattr(options, k)}


def check_option_scope(options: ExportOptions, task: str, backend: Backend) -> list[str]:
    """Options that do not apply here: an error when it would change the result, else a warning."""
    if options.unet and not task.startswith("stable-diffusion"):
        raise NeuronExportError(f"--unet replaces the UNet of a Stable Diffusion pipeline; {task} has none")
    warnings = []
    if options.num_beams is not None:
        warnings.append("--num_beams is for text generation, which this tool does not export; ignored")
    if options.num_cores is not None:
        warnings.append("--num_cores applies to text-generation models only; ignored")
    if options.auto_cast == "none" and options.auto_cast_type is not None:
        warnings.append("--auto_cast_type has no effect without --auto_cast matmul|all; ignored")
    if options.compiler_workdir and backend.name == "torchscript":
        warnings.append("--compiler_workdir: torchscript has no compiler files to keep; ignored")
    if options.optlevel == 3 and backend.name == "torchscript":
        warnings.append("-O3: torchscript's further optimization (optimize_for_inference) cannot be saved; compiled as -O2")
    return warnings


def export(
    model: str | Path,
    output: str | Path,
    options: Optional[ExportOptions] = None,
    on_event: Optional[EventSink] = None,
) -> ExportResult:
    """Compile `model` (hub id, local folder or demo:NAME) into the artifact folder `output`."""
    options = options or ExportOptions()
    output = Path(output).expanduser().resolve()
    check_output_dir(output, options.force)  # refuse before loading anything
    source = resolve_model_source(model, options)
    if source.library == "diffusers":
        from .diffusion import export_diffusion_pipeline

        return export_diffusion_pipeline(source, output, options, on_event)
    return _export_transformers(source, output, options, on_event)


def _export_transformers(source: ModelSource, output: Path, options: ExportOptions, on_event) -> ExportResult:
    arch = get_architecture(source.model_type)
    config = load_config(source, options)
    if options.task == "auto":
        task = "feature-extraction" if source.library == "sentence_transformers" else detect_task(
            source.model_type, source.config.get("architectures")
        )
        log.info("Task auto-detected: %s", task)
    else:
        task = options.task
    task_spec = check_task(source.model_type, task)
    if source.library == "sentence_transformers":
        if task != "feature-extraction":
            raise NeuronExportError(f"a sentence-transformers folder exports feature-extraction only, not {task}")
        if options.output_hidden_states or options.output_attentions:
            raise NeuronExportError("--output_hidden_states / --output_attentions are not available for sentence-transformers embeddings")
    backend, reason = choose_backend(options)
    log.info("Backend: %s (%s); runs on %s", backend.name, reason, backend.runs_on(options))
    warnings = check_option_scope(options, task, backend)
    axes = input_axes(arch.inputs, task_spec)
    shapes, shape_warnings = resolve_shapes(arch, task_spec, options, config)
    warnings += shape_warnings
    for warning in warnings:
        log.warning("Warning: %s", warning)
    options, validate, skip_reason = settle_options(options, backend)
    atol, atol_source = default_atol(arch.family.atol, options)
    cache, cache_key = None, None
    if options.use_cache and options.compiler_workdir:
        log.info("--compiler_workdir: compiling without the compile cache, so the compiler's files are written")
    elif options.use_cache:
        # Everything so far needed config.json only: a hit never loads the eager model.
        cache = CompileCache()
        cache_key = cache.key(source.path, source.library, task, shapes, backend, options)
        hit = _export_from_cache(cache, cache_key, source, output, options, warnings, on_event)
        if hit is not None:
            return hit
    total = 1 + len(COMPONENT_STAGES) - (0 if validate else 1)
    progress = Progress(on_event, total)

    with staging_dir(output, options.force) as staging:
        with progress.stage("loading", f"Loading {source.origin} for {task}"):
            eager = load_eager_model(source, task, options)
            shapes_by_input = input_shapes(axes, shapes)
            specs = arch.inputs
            example = make_inputs(specs, shapes_by_input, config, seed=0)
            if source.library == "sentence_transformers":
                output_names = list(SENTENCE_TRANSFORMERS_OUTPUTS)
            else:
                output_names = discover_output_names(eager, task_spec.outputs, example, output_flags(options))
            module = eager_traceable(source, eager, list(axes), output_names, options)
            validation_inputs = validation_input_sets(specs, shapes_by_input, config, options.dynamic_batch_size)
        component = Component(
            name=task,
            module=module,
            input_names=list(axes),
            output_names=output_names,
            axes=axes,
            example=example,
            validation_inputs=validation_inputs if validate else [],
            atol=atol,
            atol_source=atol_source,
            model_kind=arch.family.neuron_model_type,
        )
        manifest_base = {
            "source": source.origin,
            "library": source.library,
            "model_type": source.model_type,
            "task": task,
            "shapes": shapes,
            "warnings": warnings,
        }
        manifest, report = build_component(component, backend, reason, options, staging, progress, manifest_base, skip_reason)
        copy_model_files(source.encoder_path if source.library == "transformers" else source.path, staging)
        manifest["timings"] = progress.timings
        write_json(staging / MANIFEST, manifest)
        publish(staging, output, options.force)
    log.info("The compiled model was saved at: %s", output)
    if cache is not None and manifest["validation"]["passed"] is not False:
        cache.store(cache_key, output)
    return ExportResult(output, manifest, [report] if report else [], progress.timings, warnings)


def _export_from_cache(
    cache: CompileCache, key: str, source: ModelSource, output: Path, options: ExportOptions, warnings: list[str], on_event
) -> Optional[ExportResult]:
    """OUTPUT from the compile cache entry `key` (same staging/publish rules as a compile), or None on a miss."""
    start = time.perf_counter()
    with staging_dir(output, options.force) as staging:
        manifest = cache.restore(key, staging)
        if manifest is None:
            shutil.rmtree(staging, ignore_errors=True)
            return None
        progress = Progress(on_event, 1)
        message = f"Compile cache hit: reusing the artifact compiled {manifest.get('created', '')} (pass --no-cache to recompile)"
        with progress.stage("cache", message):
            # What this request asked for; the rest of the manifest describes the compile that made it.
            manifest.update(source=source.origin, warnings=warnings, options=options.to_dict(),
                            compile_cache={"hit": True, "key": key})
            write_json(staging / MANIFEST, manifest)
            publish(staging, output, options.force)
    validation = manifest.get("validation", {})
    log.info("Validated against eager PyTorch when compiled: %s",
             f"passed (atol {validation.get('atol')})" if validation.get("passed") else f"skipped ({validation.get('skipped')})")
    log.info("The compiled model was saved at: %s", output)
    return ExportResult(output, manifest, [], {"cache": time.perf_counter() - start}, warnings, cache_hit=True)


def build_component(
    component: Component,
    backend: Backend,
    backend_reason: str,
    options: ExportOptions,
    folder: Path,
    progress: Progress,
    manifest_base: dict[str, Any],
    skip_reason: Optional[str] = None,
) -> tuple[dict[str, Any], Optional[ValidationReport]]:
    """Trace, compile, save and (unless skipped) validate one component into `folder`."""
    label = component.name
    example = tuple(component.example[n] for n in component.input_names)
    compiled_module = component.module
    if options.auto_cast != "none" or options.device != "cpu":
        # prepare() casts / moves in place; the validation reference must stay fp32 on CPU.
        compiled_module = copy.deepcopy(component.module)
    compiled_module = backend.prepare(compiled_module, options)
    device_example = tuple(t.to(options.device) for t in example)
    try:
        with progress.stage("tracing", f"Tracing {label} ({backend.name})", key=f"{label}.tracing"):
            traced = backend.trace(compiled_module, device_example, options)
        with progress.stage("compiling", f"Compiling {label} ({backend.name}, -O{options.optlevel})", key=f"{label}.compiling"):
            workdir = options.compiler_workdir_path
            if workdir is not None:
                workdir = workdir / label
                workdir.mkdir(parents=True, exist_ok=True)
            backend.compile(traced, device_example, options, folder / backend.model_file, workdir, component.model_kind)
    except NeuronExportError:
        raise
    except Exception as error:
        raise NeuronExportError(f"{backend.name} could not compile {label}: {first_line(error)}") from None

    with progress.stage("saving", f"Saving {label}", key=f"{label}.saving"):
        manifest = {
            "format_version": 1,
            "tool": f"neuron_export {__version__}",
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            **manifest_base,
            "component": label,
            "backend": backend.name,
            "backend_reason": backend_reason,
            "is_neuron": backend.name == "neuron",
            "device": "cpu" if backend.name == "neuron" else options.device,
            "target": options.instance_type or ("inf2" if backend.name == "neuron" else None),
            "runs_on": backend.runs_on(options),
            "torch_version": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "compiler": backend.compiler_version(),
            "model_file": backend.model_file,
            "inputs": [
                {"name": n, "shape": list(component.example[n].shape), "dtype": str(component.example[n].dtype).removeprefix("torch."),
                 "axes": list(component.axes[n])}
                for n in component.input_names
            ],
            "outputs": component.output_names,
            "dynamic_batch": options.dynamic_batch_size,
            "auto_cast": options.auto_cast,
            "auto_cast_type": options.auto_cast_type if options.auto_cast != "none" else None,
            "optlevel": options.optlevel,
            "options": options.to_dict(),
            "validation": {"passed": None, "skipped": skip_reason or "--disable-validation"},
        }
        write_json(folder / MANIFEST, manifest)

    report = None
    if component.validation_inputs:
        with progress.stage("validating", f"Validating {label} against eager PyTorch", key=f"{label}.validating"):
            compiled = load_artifact(folder)
            report = compare(label, component.module, component.output_names, compiled, component.validation_inputs,
                             component.atol, component.atol_source)
            for line in report.log_lines():
                log.info("%s", line)
            write_json(folder / VALIDATION_REPORT, report.to_dict())
            manifest["validation"] = {"passed": report.passed, "atol": report.atol}
            write_json(folder / MANIFEST, manifest)
    return manifest, report


def copy_model_files(source: Path, destination: Path) -> None:
    """Config, tokenizer, preprocessor and sentence-transformers files: everything but weights."""
    for path in source.rglob("*"):
        relative = path.relative_to(source)
        if path.is_dir() or path.suffix in SKIPPED_SUFFIXES or any(p.startswith(".") for p in relative.parts):
            continue
        target = destination / relative
        if target.exists():
            continue  # never overwrite what the export wrote (manifest.json, ...)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)

