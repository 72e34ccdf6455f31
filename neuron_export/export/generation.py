"""Plan the export of a generative model (registry/generation.py) as several graphs.

A decoder LM: one prompt graph per prompt length (the cache length, or each value of a bucketed
--sequence_length, the largest being the cache length) and a decode graph whose KV cache is state. An encoder-decoder: the encoder graph
(with the cross-attention keys and values) and the decoder graph. The decode / decoder graph is
validated by whole generations against transformers' generate (generation/check.py); the other
graphs by comparing their outputs on fresh inputs, as every encoder is.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import torch

from ..errors import NeuronExportError
from ..generation.graphs import DecodeGraph, DecoderStepGraph, EncoderGraph, PrefillGraph, cache_names, decoder_layer_count
from ..generation.runtime import DECODE, DECODER, ENCODER, prefill_component
from ..inputs import check_input_memory, make_inputs, validation_input_sets, value_ranges
from ..options import ExportOptions
from ..registry import DECODER as DECODER_KIND, Architecture, check_task, detect_task, get_architecture, sliding_window
from ..sources import ModelSource, check_preprocessor, load_config, load_eager_model, untrained_warning
from .buckets import option_buckets_of
from .plan import Component, ComponentPlan, ExportPlan, default_atol, plan_backend, settle_plan

log = logging.getLogger("neuron_export")

CACHE_AXES = ("batch_size", "kv_heads", "sequence_length", "head_dim")
CROSS_AXES = ("batch_size", "kv_heads", "source_length", "head_dim")
PUBLIC_SHAPES = ("batch_size", "sequence_length")


def plan_generation(source: ModelSource, options: ExportOptions) -> ExportPlan:
    arch = get_architecture(source.model_type)
    task = options.task
    if task == "auto":
        task = detect_task(source.model_type, source.config.get("architectures"))
        log.info("Task auto-detected: %s", task)
    spec = check_task(source.model_type, task)
    _refuse_options(options, task)
    config = load_config(source, options)
    check_preprocessor(source, arch.family.processor)  # a corrupt tokenizer / processor: refused before anything is written
    backend, reason, warnings = plan_backend(options, task, has_unet=False)
    shapes, prompt_lengths, shape_warnings = generation_shapes(arch, task, options, config)
    check_input_memory({spec.name: (shapes["batch_size"], shapes["sequence_length"]) for spec in arch.family.inputs
                        if "sequence_length" in spec.axes}, {**options.shapes(), **shapes})
    warnings += shape_warnings
    options, skip_reason = settle_plan(options, backend, warnings)
    if spec.kind == DECODER_KIND:
        components = _decoder_components(source, task, arch, config, shapes, prompt_lengths, options, skip_reason is None)
    else:
        components = _encoder_decoder_components(source, task, arch, config, shapes, options, skip_reason is None)
    resolved = {**shapes, "prompt_lengths": prompt_lengths}  # in the compile cache key: the shape options are not
    return ExportPlan(source, task, backend, reason, options, resolved, {key: shapes[key] for key in PUBLIC_SHAPES}, components,
                      warnings, skip_reason, files=[(source.path, "")],  # config, generation config, tokenizer / processor files
                      cache_folders=[source.path], pipeline_class=spec.model_class)


def _refuse_options(options: ExportOptions, task: str) -> None:
    if options.dynamic_batch_size:
        raise NeuronExportError(f"--dynamic-batch-size: {task} keeps a KV cache per batch row; export with the --batch_size you need")
    if options.auto_cast == "all":
        raise NeuronExportError(f"--auto_cast all is not available for {task} (its KV cache stays fp32); use --auto_cast matmul")
    for flag in ("output_hidden_states", "output_attentions"):
        if getattr(options, flag):
            raise NeuronExportError(f"--{flag} does not apply to {task}: its graphs return logits")


def generation_shapes(arch: Architecture, task: str, options: ExportOptions, config: Any) -> tuple[dict[str, int], list[int], list[str]]:
    """batch_size and sequence_length (the KV cache: prompt + generated tokens), within the model's
    limits, and the prompt lengths with a graph of their own: a bucketed --sequence_length (a decoder
    LM's Family.bucketable) gives one prompt graph per value and a cache of the largest."""
    family = arch.family
    buckets, _ = option_buckets_of(family.bucketable, options, ["sequence_length"], task)
    prompt_lengths = [bucket["sequence_length"] for bucket in buckets]
    length = prompt_lengths[-1] if prompt_lengths else options.sequence_length
    if length is None:
        default = family.default_shapes.get("sequence_length")
        length = default(config) if callable(default) else default
    if length is None:
        raise NeuronExportError(f"missing --sequence_length: {task} needs it (the KV cache length: prompt + generated tokens, "
                                "for example --sequence_length 1024)")
    limit_attr = family.shape_limits.get("sequence_length")
    limit = getattr(config, limit_attr, None) if limit_attr else None
    if isinstance(limit, int) and length > limit:
        raise NeuronExportError(f"--sequence_length {length} is beyond the model's {limit_attr} ({limit})")
    window = sliding_window(config)
    if window is not None and length > window:
        raise NeuronExportError(f"--sequence_length {length} is beyond the model's sliding attention window ({window}): "
                                "the compiled graphs attend to the whole cache")
    shapes = {"batch_size": options.batch_size or 1, "sequence_length": length}
    if any(spec.name == "input_features" for spec in family.inputs):  # Whisper: the feature extractor's fixed 30 s window
        shapes.update(num_mel_bins=config.num_mel_bins, audio_frames=2 * config.max_source_positions)
    ignored = [name for name in options.shapes() if name not in shapes and name != "num_beams"]
    return shapes, prompt_lengths or [length], [f"--{name} is not used by {task}; ignored" for name in ignored]


def _decoder_components(source, task, arch, config, shapes, prompt_lengths, options, validate) -> list[ComponentPlan]:
    """A prompt graph per prompt length (a prompt runs on the smallest that holds it) and the decode graph."""
    plans = [ComponentPlan(prefill_component(length), prefill_component(length),
                           partial(_prefill, source, task, arch, config, shapes, length, options, validate))
             for length in prompt_lengths]
    return plans + [ComponentPlan(DECODE, DECODE, partial(_decode, source, task, arch, config, shapes, options, validate))]


def _encoder_decoder_components(source, task, arch, config, shapes, options, validate) -> list[ComponentPlan]:
    return [ComponentPlan(ENCODER, ENCODER, partial(_encoder, source, task, arch, config, shapes, options, validate)),
            ComponentPlan(DECODER, DECODER, partial(_decoder, source, task, arch, config, shapes, options, validate))]


def _encoder_shapes(arch: Architecture, shapes: dict[str, int]) -> dict[str, tuple[int, ...]]:
    """Each encoder (or prompt) input's shape: tokens up to sequence_length, or the audio features."""
    return {spec.name: tuple(shapes[axis] for axis in spec.axes) for spec in arch.family.inputs}


def _eager(source: ModelSource, task: str, options: ExportOptions):
    """The eager model and the head weights its checkpoint lacks for the task: warned here, recorded
    in each graph's manifest (missing weights of the body are refused by load_eager_model)."""
    eager, untrained = load_eager_model(source, task, options)
    if untrained:
        log.warning("Warning: %s", untrained_warning(source.origin, task, untrained))
    return eager, untrained


def _step_ranges(config, length: int, names: list[str]) -> dict[str, list[int]]:
    """Valid values of a decode step's inputs: token ids within the vocabulary, positions within the cache."""
    ranges = {"input_ids": [0, int(config.vocab_size) - 1], "decoder_input_ids": [0, int(config.vocab_size) - 1],
              "position_ids": [0, length - 1], "encoder_attention_mask": [0, 1]}
    return {name: ranges[name] for name in names if name in ranges}


def _graph_inputs(arch, config, shapes_by_input, validate):
    example = make_inputs(arch.family.inputs, shapes_by_input, config, seed=0)
    fresh = validation_input_sets(arch.family.inputs, shapes_by_input, config, dynamic_batch=False) if validate else []
    return example, fresh


def _prefill(source: ModelSource, task: str, arch: Architecture, config, shapes, length: int, options, validate) -> Component:
    eager, untrained = _eager(source, task, options)
    batch = shapes["batch_size"]
    by_input = {spec.name: (batch, length) for spec in arch.family.inputs}
    example, fresh = _graph_inputs(arch, config, by_input, validate)
    atol, atol_source = default_atol(arch.family.atol, options)
    return Component(
        name=prefill_component(length), module=PrefillGraph(eager, shapes["sequence_length"]).eval(), input_names=list(by_input),
        output_names=["logits", *cache_names("past", decoder_layer_count(config))],
        axes={name: ("batch_size", "prompt_length") for name in by_input}, example=example, validation_inputs=fresh,
        atol=atol, atol_source=atol_source, model_kind=arch.family.neuron_model_type,
        untrained_weights=untrained, value_ranges=value_ranges(arch.family.inputs, config),
    )


def _state(names: list[str], shapes: list[torch.Size], length: int) -> dict[str, torch.Tensor]:
    """Zero caches of the probed shapes, `length` slots long (dtype of the model: fp32)."""
    return {name: torch.zeros(shape[0], shape[1], length, shape[3]) for name, shape in zip(names, shapes)}


def _decode(source, task, arch, config, shapes, options, validate) -> Component:
    from ..generation.check import check_decoder

    eager, untrained = _eager(source, task, options)
    batch, length = shapes["batch_size"], shapes["sequence_length"]
    names = cache_names("past", decoder_layer_count(config))
    with torch.no_grad():  # the caches' heads and head size, from one token through the prompt graph
        probe = PrefillGraph(eager, length)(torch.zeros(batch, 1, dtype=torch.long), torch.ones(batch, 1, dtype=torch.long))
    state = _state(names, [t.shape for t in probe[1:]], length)
    steps = {"input_ids": torch.randint(5, int(config.vocab_size), (batch, 1), generator=torch.Generator().manual_seed(0)),
             "position_ids": torch.zeros(batch, 1, dtype=torch.long)}
    atol, atol_source = default_atol(arch.family.atol, options)
    return Component(
        name=DECODE, module=DecodeGraph(eager).eval(), input_names=[*steps, *state], output_names=["logits"],
        axes={"input_ids": ("batch_size", "step"), "position_ids": ("batch_size", "step"), **{n: CACHE_AXES for n in state}},
        example={**steps, **state}, validation_inputs=[], atol=atol, atol_source=atol_source,
        model_kind=arch.family.neuron_model_type, state_inputs=tuple(state),
        untrained_weights=untrained, value_ranges=_step_ranges(config, length, list(steps)),
        check=partial(check_decoder, eager=eager, config=config, atol=atol, atol_source=atol_source) if validate else None,
    )


def _encoder(source, task, arch, config, shapes, options, validate) -> Component:
    eager, untrained = _eager(source, task, options)
    by_input = _encoder_shapes(arch, shapes)
    example, fresh = _graph_inputs(arch, config, by_input, validate)
    atol, atol_source = default_atol(arch.family.atol, options)
    return Component(
        name=ENCODER, module=EncoderGraph(eager, list(by_input)).eval(), input_names=list(by_input),
        output_names=cache_names("cross", decoder_layer_count(config)),
        axes={spec.name: spec.axes for spec in arch.family.inputs}, example=example, validation_inputs=fresh,
        atol=atol, atol_source=atol_source, model_kind=arch.family.neuron_model_type,
        untrained_weights=untrained, value_ranges=value_ranges(arch.family.inputs, config),
    )


def _decoder(source, task, arch, config, shapes, options, validate) -> Component:
    from ..generation.check import check_encoder_decoder

    eager, untrained = _eager(source, task, options)
    batch, length = shapes["batch_size"], shapes["sequence_length"]
    by_input = _encoder_shapes(arch, shapes)
    layers = decoder_layer_count(config)
    with torch.no_grad():  # the cross-attention caches' shapes; self-attention has the same heads and head size (T5, Whisper)
        cross = EncoderGraph(eager, list(by_input))(*make_inputs(arch.family.inputs, by_input, config).values())
    state = {**_state(cache_names("past", layers), [t.shape for t in cross], length), **dict(zip(cache_names("cross", layers), cross))}
    steps = {"decoder_input_ids": torch.full((batch, 1), int(config.decoder_start_token_id), dtype=torch.long),
             "position_ids": torch.zeros(batch, 1, dtype=torch.long)}
    axes = {"decoder_input_ids": ("batch_size", "step"), "position_ids": ("batch_size", "step")}
    encoder_mask = "attention_mask" in by_input
    if encoder_mask:
        steps["encoder_attention_mask"] = torch.ones(by_input["attention_mask"], dtype=torch.long)
        axes["encoder_attention_mask"] = ("batch_size", "sequence_length")
    atol, atol_source = default_atol(arch.family.atol, options)
    return Component(
        name=DECODER, module=DecoderStepGraph(eager, encoder_mask).eval(), input_names=[*steps, *state], output_names=["logits"],
        axes={**axes, **{name: CROSS_AXES if name.startswith("cross") else CACHE_AXES for name in state}},
        example={**steps, **state}, validation_inputs=[],
        atol=atol, atol_source=atol_source, model_kind=arch.family.neuron_model_type, state_inputs=tuple(state),
        untrained_weights=untrained, value_ranges=_step_ranges(config, length, list(steps)),
        check=partial(check_encoder_decoder, eager=eager, config=config, atol=atol, atol_source=atol_source) if validate else None,
    )
