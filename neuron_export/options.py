"""ExportOptions: every choice of one export, passed whole from the CLI / API / dashboard to the engine."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from .bucketing import ShapeValue, shape_value
from .errors import NeuronExportError

DEVICES = ("cpu", "cuda")
INSTANCE_TYPES = ("inf2", "trn1")
AUTO_CAST = ("none", "matmul", "all")
AUTO_CAST_TYPES = ("bf16", "fp16", "tf32")
OPTLEVELS = (1, 2, 3)
CPU_ISAS = ("native", "avx2", "avx512")  # what an inductor CPU artifact's machine code may use (neuron_export.cpu)
QUANTIZATIONS = ("none", "int8-dynamic")  # int8-dynamic: int8 weights, activations quantized at each call

# Shape options by the names of the seed CLI; each task declares which ones it uses.
SHAPE_FIELDS = (
    "batch_size",
    "sequence_length",
    "num_choices",
    "num_channels",
    "height",
    "width",
    "num_images_per_prompt",
    "num_beams",
    "audio_sequence_length",
    "text_batch_size",
    "image_batch_size",
)
# Shape options that may hold several values: buckets, "32,64,128", or "auto:16-512" (bucketing.py).
# Whether a model buckets them is the registry's (Family.bucketable, DiffusionTask.bucketable).
MULTI_VALUE_FIELDS = ("sequence_length", "height", "width")


@dataclass
class ExportOptions:
    task: str = "auto"
    backend: str = "auto"  # a name of backends.BACKENDS, or auto (checked when the backend is chosen)
    device: str = "cpu"
    instance_type: Optional[str] = None
    # static input shapes (None = the task's default)
    batch_size: Optional[int] = None
    sequence_length: Optional[ShapeValue] = None  # one value, several (buckets), or "auto:LOW-HIGH"
    num_choices: Optional[int] = None
    num_channels: Optional[int] = None
    height: Optional[ShapeValue] = None  # several heights pair with as many widths (one bucket each)
    width: Optional[ShapeValue] = None
    num_images_per_prompt: Optional[int] = None
    num_beams: Optional[int] = None
    audio_sequence_length: Optional[int] = None  # audio samples (16000 = 1 s at 16 kHz)
    text_batch_size: Optional[int] = None  # CLIP: texts per call (zero-shot: the most labels)
    image_batch_size: Optional[int] = None  # CLIP: images per call
    length_histogram: Optional[str] = None  # lengths of real traffic: an auto bucket option minimises their padding
    # compiler
    auto_cast: str = "none"
    auto_cast_type: Optional[str] = None  # bf16 when --auto_cast is on and no type is given
    optlevel: int = 2
    dynamic_batch_size: bool = False
    compiler_workdir: Optional[str] = None
    num_cores: Optional[int] = None
    cpu_isa: str = "native"  # native: this host's CPU; avx2 / avx512: any CPU of that level (x86-64-v3 / -v4)
    quantize: str = "none"  # the linear layers' weights and activations in int8 (backends that declare it)
    threads: Optional[int] = None  # CPU threads the artifact's GEMMs are split for (None: this host's cores)
    # model
    trust_remote_code: bool = False
    cache_dir: Optional[str] = None
    unet: Optional[str] = None
    output_hidden_states: bool = False
    output_attentions: bool = False
    # LoRA fused into a diffusion pipeline's UNet and text encoder(s) at compile time (diffusion/lora.py)
    lora_model_ids: tuple[str, ...] = ()  # local folders
    lora_weight_names: tuple[str, ...] = ()  # one file each (default: diffusers' pytorch_lora_weights.safetensors)
    lora_adapter_names: tuple[str, ...] = ()  # one each; required for several
    lora_scales: tuple[float, ...] = ()  # one each (default 1.0)
    # False: a Stable Diffusion UNet compiled for one row per image, run at guidance_scale <= 1 (SDXL Turbo at 0)
    classifier_free_guidance: bool = True
    # ControlNets added to a base Stable Diffusion pipeline, each compiled as a component (diffusion/controlnet.py)
    controlnet_ids: tuple[str, ...] = ()  # local folders or hub ids; "a,b" and ["a", "b"] alike
    # validation / output
    atol: Optional[float] = None
    disable_validation: bool = False
    force: bool = False
    use_cache: bool = True

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Reject values that are wrong whatever the model (the task-dependent checks come later)."""
        _one_of("--device", self.device, DEVICES)
        _one_of("--auto_cast", self.auto_cast, AUTO_CAST)
        if self.auto_cast_type is not None:
            _one_of("--auto_cast_type", self.auto_cast_type, AUTO_CAST_TYPES)
        if self.instance_type is not None:
            _one_of("--instance_type", self.instance_type, INSTANCE_TYPES)
        _one_of("--cpu_isa", self.cpu_isa, CPU_ISAS)
        _one_of("--quantize", self.quantize, QUANTIZATIONS)
        if self.quantize != "none" and self.auto_cast != "none":
            raise NeuronExportError(f"--quantize {self.quantize} and --auto_cast {self.auto_cast} both lower the matmuls' precision; choose one")
        if self.optlevel not in OPTLEVELS:
            raise NeuronExportError(f"-O{self.optlevel} is not a valid optimization level; use -O1, -O2 or -O3")
        for name in MULTI_VALUE_FIELDS:  # lists (from JSON) become tuples, one value an int
            setattr(self, name, shape_value(f"--{name}", getattr(self, name)))
        for name in SHAPE_FIELDS + ("num_cores", "threads"):
            value = getattr(self, name)
            if name not in MULTI_VALUE_FIELDS and value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
                raise NeuronExportError(f"--{name} must be a positive integer, got {value!r}")
        if self.atol is not None and (isinstance(self.atol, bool) or not (isinstance(self.atol, (int, float)) and 0 < self.atol < math.inf)):
            # inf would pass any difference, NaN included: validation would mean nothing
            raise NeuronExportError(f"--atol must be a positive finite number, got {self.atol!r}")
        _check_loras(self)
        _check_controlnets(self)

    def shapes(self) -> dict[str, ShapeValue]:
        """The shape options the user set."""
        return {name: getattr(self, name) for name in SHAPE_FIELDS if getattr(self, name) is not None}

    def replace(self, **changes: Any) -> "ExportOptions":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ExportOptions":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def cast_type(self) -> Optional[str]:
        """The precision auto-cast casts to (bf16 unless --auto_cast_type says), None when auto-cast is off."""
        return None if self.auto_cast == "none" else (self.auto_cast_type or "bf16")

    @property
    def compiler_workdir_path(self) -> Optional[Path]:
        return Path(self.compiler_workdir) if self.compiler_workdir else None


LORA_FIELDS = ("lora_model_ids", "lora_weight_names", "lora_adapter_names", "lora_scales")


def _check_loras(options: ExportOptions) -> None:
    """The --lora_* lists (a single value, from Python, becomes a list of one): one value per LoRA each."""
    for name in LORA_FIELDS:
        value = getattr(options, name)
        values = (value,) if isinstance(value, (str, int, float, os.PathLike)) else tuple(value or ())
        if name != "lora_scales":
            values = tuple(os.fspath(v) if isinstance(v, os.PathLike) else v for v in values)
            if not all(isinstance(v, str) and v for v in values):
                raise NeuronExportError(f"--{name} must be names, got {list(values)!r}")
        setattr(options, name, values)
    count = len(options.lora_model_ids)
    for name in LORA_FIELDS[1:]:
        given = len(getattr(options, name))
        if given and not count:
            raise NeuronExportError(f"--{name} applies to --lora_model_ids, which are not given")
        if given and given != count:
            raise NeuronExportError(f"--{name} has {given} value{'s' * (given != 1)} for {count} --lora_model_ids")
    if count > 1 and not options.lora_adapter_names:
        raise NeuronExportError(f"{count} --lora_model_ids need --lora_adapter_names, one name each")
    if len(set(options.lora_adapter_names)) < len(options.lora_adapter_names):
        raise NeuronExportError(f"--lora_adapter_names must differ, got {' '.join(options.lora_adapter_names)}")
    for scale in options.lora_scales:
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
            raise NeuronExportError(f"--lora_scales must be finite numbers, got {scale!r}")


CONTROLNET_FIELDS = ("controlnet_ids",)


def _check_controlnets(options: ExportOptions) -> None:
    """--controlnet_ids: names given separately (optimum-neuron's nargs) or comma-separated, into one tuple."""
    value = options.controlnet_ids
    values = (value,) if isinstance(value, (str, os.PathLike)) else tuple(value or ())
    if not all(isinstance(v, (str, os.PathLike)) for v in values):
        raise NeuronExportError(f"--controlnet_ids must be folders or hub ids, got {list(values)!r}")
    names = tuple(part.strip() for v in values for part in os.fspath(v).split(","))
    if not all(names):
        raise NeuronExportError(f"--controlnet_ids has an empty name: {' '.join(map(os.fspath, values))!r}")
    options.controlnet_ids = names


def _one_of(flag: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise NeuronExportError(f"{flag} {value!r} is not one of: {', '.join(map(str, allowed))}")

