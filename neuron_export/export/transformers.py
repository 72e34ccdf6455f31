"""Plan the export of a transformers (or sentence-transformers) encoder folder."""

from __future__ import annotations

import logging
from functools import partial

from ..errors import NeuronExportError
from ..inputs import input_axes, input_shapes, make_inputs, pad_value, resolve_shapes, validation_input_sets, value_ranges
from ..options import ExportOptions
from ..registry import SENTENCE_TRANSFORMERS, Architecture, TaskSpec, check_task, detect_task, get_architecture
from ..sentence_clip import sentence_outputs
from ..sources import (ModelSource, check_preprocessor, load_config, load_eager_model, read_preprocessor_config, untrained_warning)
from ..traceable import call_options, discover_output_names, eager_traceable, output_flags
from .buckets import bucket_plan, plan_shapes
from .plan import Component, ComponentPlan, ExportPlan, default_atol, plan_backend, settle_plan

log = logging.getLogger("neuron_export")


def plan_transformers(source: ModelSource, options: ExportOptions) -> ExportPlan:
    arch = get_architecture(source.model_type)
    config = load_config(source, options)
    check_preprocessor(source, arch.family.processor)
    task = _task(source, options)
    task_spec = check_task(source.model_type, task)
    if source.library == "sentence_transformers":
        if task != SENTENCE_TRANSFORMERS.task:
            raise NeuronExportError(f"a sentence-transformers folder exports {SENTENCE_TRANSFORMERS.task} only, not {task}")
        if options.output_hidden_states or options.output_attentions:
            raise NeuronExportError("--output_hidden_states / --output_attentions are not available for sentence-transformers embeddings")
        sentence_outputs(source)  # an unsupported module: refused now
    backend, reason, warnings = plan_backend(options, task, has_unet=False)
    specs = arch.task_inputs(task, config)
    used_axes = [axis for axes in input_axes(specs, task_spec).values() for axis in axes]
    preprocessor = read_preprocessor_config(source.encoder_path)
    planned = plan_shapes(arch.family.bucketable, options, used_axes, task,
                          lambda o: resolve_shapes(arch, task_spec, o, config, preprocessor))
    if options.dynamic_batch_size and "batch_size" not in planned.largest:
        batches = ", ".join(f"--{axis}" for axis in planned.largest if axis.endswith("batch_size"))
        raise NeuronExportError(f"--dynamic-batch-size: {source.model_type} {task} has no single batch axis; its batches are static ({batches})")
    warnings += planned.warnings
    options, skip_reason = settle_plan(planned.settle(options), backend, warnings)
    load = partial(_load_component, source, arch, task_spec, config, planned.per_bucket, planned.fit, options, skip_reason is None)
    return ExportPlan(
        source=source,
        task=task,
        backend=backend,
        backend_reason=reason,
        options=options,
        shapes=planned.largest,  # the largest bucket: what the artifact takes at most
        public_shapes=planned.largest,
        components=[ComponentPlan(task, "", load, bucketed=bool(planned.buckets))],
        warnings=warnings,
        skip_reason=skip_reason,
        files=[(source.encoder_path if source.library == "transformers" else source.path, "")],
        cache_folders=[source.path],
        buckets=planned.buckets,
        bucket_fit=planned.fit,
    )


def _task(source: ModelSource, options: ExportOptions) -> str:
    if source.library == "sentence_transformers" and options.task in SENTENCE_TRANSFORMERS.task_aliases:
        return SENTENCE_TRANSFORMERS.task
    if options.task != "auto":
        return options.task
    if source.library == "sentence_transformers":
        task = SENTENCE_TRANSFORMERS.task
    else:
        task = detect_task(source.model_type, source.config.get("architectures"))
    log.info("Task auto-detected: %s", task)
    return task


def _load_component(source: ModelSource, arch: Architecture, task: TaskSpec, config, shapes_per_bucket: list[dict[str, int]],
                    fit, options: ExportOptions, validate: bool) -> Component:
    """The eager model wrapped for tracing, with its example and fresh validation inputs (per bucket)."""
    eager, untrained = load_eager_model(source, task.name, options)
    if untrained:
        log.warning("Warning: %s", untrained_warning(source.origin, task.name, untrained))
    specs = arch.task_inputs(task.name, config)
    axes = input_axes(specs, task)

    def inputs_for(shapes: dict[str, int]):
        by_input = input_shapes(axes, shapes)
        validation = validation_input_sets(specs, by_input, config, options.dynamic_batch_size) if validate else []
        return make_inputs(specs, by_input, config, seed=0), validation

    example, validation_inputs = inputs_for(shapes_per_bucket[-1])
    if source.library == "sentence_transformers":
        output_names = sentence_outputs(source)
    else:
        flags = {**output_flags(options), **call_options(source.model_type)}
        output_names = discover_output_names(eager, task.outputs, example, flags)
    atol, atol_source = default_atol(arch.atol or arch.family.atol, options)
    return Component(
        name=task.name,
        module=eager_traceable(source, eager, list(axes), output_names, options),
        input_names=list(axes),
        output_names=output_names,
        axes=axes,
        example=example,
        validation_inputs=validation_inputs,
        atol=atol,
        atol_source=atol_source,
        model_kind=arch.family.neuron_model_type,
        bucketing=bucket_plan(axes, shapes_per_bucket, fit, inputs_for, {spec.name: pad_value(spec, config) for spec in specs})
        if len(shapes_per_bucket) > 1 else None,
        untrained_weights=untrained,
        value_ranges=value_ranges(specs, config),
    )

