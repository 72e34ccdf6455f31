"""What an export will do, decided before any weights load: components, shapes, atol, backend.

The transformers and diffusion planners (transformers.py, diffusion.py) only produce an ExportPlan;
build.py carries it out. Everything here reads configs only, so a compile cache hit never loads
the eager model.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Optional

import torch

from ..backends import Backend, choose_backend
from ..errors import NeuronExportError
from ..options import ExportOptions
from ..sources import ModelSource
from ..validation import ValidationReport

log = logging.getLogger("neuron_export")

# Default atol when auto-casting: low-precision matmuls cannot meet the fp32 tolerance.
CAST_ATOL = {"bf16": 5e-2, "fp16": 1e-2, "tf32": 5e-3}
# Default atol of a quantized model against eager fp32: int8 rounds every weight and activation to
# 1/127 of its range, so O(1) hidden states move by 1e-2..1e-1 (all-MiniLM-L6-v2: mean 0.02, max 0.34).
QUANTIZE_ATOL = {"int8-dynamic": 5e-1}
COMPONENT_STAGES = ("loading", "tracing", "compiling", "saving", "validating")


@dataclass
class Component:
    """One loaded model to compile: the eager module (the validation reference) and its inputs."""

    name: str
    module: torch.nn.Module  # positional inputs -> tuple of outputs, fp32 on CPU
    input_names: list[str]
    output_names: list[str]
    axes: dict[str, tuple[str, ...]]
    example: dict[str, torch.Tensor]
    validation_inputs: list[dict[str, torch.Tensor]]  # empty: not validated
    atol: float
    atol_source: str
    model_kind: str = "generic"  # neuronx-cc --model-type
    options: Optional[ExportOptions] = None  # its own options when they differ from the plan's (a VAE stays fp32)
    data_parallel: bool = False  # copied to several cores at load (Backend.cores)
    # around its trace and compile: a backend's recipe for it (the Neuron SD attention); the eager
    # module is what validation compares with, outside it
    compile_context: Callable[[], ContextManager] = contextlib.nullcontext
    bucketing: Optional[Any] = None  # a BucketPlan (export/buckets.py) when it is compiled at several shapes
    untrained_weights: list[str] = field(default_factory=list)  # head weights the checkpoint lacks for the task
    value_ranges: dict[str, list[int]] = field(default_factory=dict)  # input -> [lowest, highest] valid value
    state_inputs: tuple[str, ...] = ()  # the last inputs, updated in place and held by the loaded model (KV caches)
    # Validates the built component folder instead of comparing its outputs on validation_inputs
    # (a decode graph: whole generations against transformers' generate).
    check: Optional[Callable[[Path], ValidationReport]] = None


@dataclass
class ComponentPlan:
    """A component to build: `load` runs in its loading stage (one component's weights at a time)."""

    name: str
    folder: str  # its folder inside the artifact; "" for a single-model artifact
    load: Callable[[], Component]
    config_file: Optional[Path] = None  # copied beside the compiled model
    bucketed: bool = False  # compiled once per bucket of the plan


@dataclass
class ExportPlan:
    source: ModelSource
    task: str
    backend: Backend
    backend_reason: str
    options: ExportOptions  # settled: the defaults that depend on the choices filled in
    shapes: dict[str, int]  # every resolved shape value
    public_shapes: dict[str, int]  # the ones that describe the artifact to its user
    components: list[ComponentPlan]
    warnings: list[str] = field(default_factory=list)
    skip_reason: Optional[str] = None  # why it will not be validated (None: validated)
    # (model folder, folder in the artifact): config, tokenizer and pipeline files to copy (no weights)
    files: list[tuple[Path, str]] = field(default_factory=list)
    model_index: Optional[dict[str, Any]] = None  # written in place of a copied model_index.json (a pipeline assembled here)
    cache_folders: list[Path] = field(default_factory=list)  # model folders whose files key the compile cache
    pipeline_class: Optional[str] = None  # set for pipelines (several components)
    # several static shapes: each bucket's values of the bucketed shape options, smallest first
    buckets: list[dict[str, int]] = field(default_factory=list)
    bucket_fit: Optional[str] = None  # how calls meet the buckets (registry PAD | EXACT)
    # A pipeline's end-to-end check, run on the staging folder once every component passed its own
    # (diffusion: the whole pipeline's image against eager diffusers'); None: none
    end_to_end: Optional[Callable[[Path], Any]] = None
    loras: list[dict[str, Any]] = field(default_factory=list)  # LoRAs fused into the weights (diffusion/lora.py)

    @property
    def validate(self) -> bool:
        return self.skip_reason is None

    @property
    def stage_count(self) -> int:
        per_shape = len(COMPONENT_STAGES) - 2 - (0 if self.validate else 1)  # tracing, compiling (and validating)
        components = sum(2 + per_shape * (len(self.buckets) if c.bucketed else 1) for c in self.components)  # + loading, saving
        return components + (self.end_to_end is not None)


def default_atol(family_atol: float, options: ExportOptions) -> tuple[float, str]:
    if options.atol is not None:
        return options.atol, "--atol"
    if options.quantize != "none":
        return max(family_atol, QUANTIZE_ATOL[options.quantize]), f"default for --quantize {options.quantize}"
    if options.auto_cast != "none":
        cast = options.cast_type
        return max(family_atol, CAST_ATOL[cast]), f"default for --auto_cast {options.auto_cast} {cast}"
    return family_atol, "default for the model family"


def settle_plan(options: ExportOptions, backend: Backend, warnings: list[str]) -> tuple[ExportOptions, Optional[str]]:
    """Log the plan's warnings, then settle_options."""
    for warning in warnings:
        log.warning("Warning: %s", warning)
    return settle_options(options, backend)


def settle_options(options: ExportOptions, backend: Backend) -> tuple[ExportOptions, Optional[str]]:
    """Defaults that depend on the choices made (the cast type), and why it will not be validated, if so."""
    if options.auto_cast != "none" and options.auto_cast_type is None:
        options = options.replace(auto_cast_type=options.cast_type)
    if options.disable_validation:
        return options, "--disable-validation"
    reason = backend.validation_problem(options)
    if reason:
        log.warning("Warning: %s", reason)
    return options, reason


def plan_backend(options: ExportOptions, task: str, has_unet: bool) -> tuple[Backend, str, list[str]]:
    """The backend of a plan (logged with why and where its artifacts run) and the option warnings."""
    backend, reason = choose_backend(options)
    log.info("Backend: %s (%s); runs on %s", backend.name, reason, backend.runs_on(options))
    return backend, reason, option_warnings(options, task, backend, has_unet)


def option_warnings(options: ExportOptions, task: str, backend: Backend, has_unet: bool) -> list[str]:
    """Options that do not apply here: an error when it would change the result, else a warning."""
    if options.unet and not has_unet:
        raise NeuronExportError(f"--unet replaces the UNet of a Stable Diffusion pipeline; {task} has none")
    warnings = []
    if options.num_beams is not None:
        warnings.append("--num_beams: beam search is not compiled (generation is greedy or sampled); ignored")
    if options.num_cores is not None:
        warnings.append("--num_cores (tensor parallelism over NeuronCores) is not supported; ignored")
    if options.auto_cast == "none" and options.auto_cast_type is not None:
        warnings.append("--auto_cast_type has no effect without --auto_cast matmul|all; ignored")
    return warnings + backend.option_warnings(options)
