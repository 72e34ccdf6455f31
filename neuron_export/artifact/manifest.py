"""The manifest of an artifact folder: what was compiled, how, where it runs, and its verdict.

One typed record, read and written here only. A single compiled model lists its inputs and outputs;
a pipeline (Stable Diffusion) lists its components, each a folder with a manifest of its own.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..errors import ArtifactError, NeuronExportError, first_line
from ..options import ExportOptions

MANIFEST = "manifest.json"
VALIDATION_REPORT = "validation.json"
FORMAT_VERSION = 1
BUCKETS_FORMAT = 2  # written by bucketed artifacts only: a reader of format 1 would run one bucket as the whole model
READABLE_FORMATS = (FORMAT_VERSION, BUCKETS_FORMAT)
# Written by every manifest of this tool: --force replaces only folders that carry it.
TOOL_MARKER = "neuron_export"
# What a validation report (validation.json) holds for the screens that show it.
REPORT_FIELDS = {"passed", "atol", "atol_source", "names_match", "compiled_output_names", "reference_output_names",
                 "outputs", "error_bin_edges"}
REPORT_OUTPUT_FIELDS = {"name", "reference_shape", "compiled_shape", "shape_match", "max_abs_diff", "mean_abs_diff",
                        "atol", "error_histogram"}
# The files and component folders a manifest names: plain names inside the artifact folder.
PLAIN_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")


@dataclass
class TensorSpec:
    """A compiled input: its static shape, dtype and the shape option behind each axis."""

    name: str
    shape: list[int]
    dtype: str
    axes: list[str]
    pad: Optional[float] = None  # bucketed models: what pads it up to a larger bucket (token ids: the pad token)
    # [lowest, highest] value it may hold (token ids < vocab_size, ...); None: any. Written at export
    # from the model's config, checked on every call (an out-of-range id is an index error inside).
    value_range: Optional[list[int]] = None
    # A KV cache: the loaded model holds it between calls (CompiledModel.state); callers never pass it.
    state: bool = False


@dataclass
class ImageCheck:
    """A pipeline's end-to-end image check (diffusion/image_check.py): the whole compiled pipeline's
    image against the eager diffusers pipeline's, same prompt, seed, scheduler and steps."""

    passed: bool
    psnr: float  # dB over [0, 1] pixels; PSNR_CAP when the images are identical
    max_pixel_diff: float  # largest |compiled - eager| of any pixel channel, pixels in [0, 1]
    mean_pixel_diff: float
    min_psnr: float  # the thresholds it was held to (they depend on auto-cast)
    max_pixel_diff_limit: float
    max_latent_drift: float
    # per scheduler step: max |compiled - eager| of the latents after it, over max |eager latents|
    latent_drift: list[float] = field(default_factory=list)
    diverged_step: Optional[int] = None  # first step (1-based) whose drift exceeds max_latent_drift
    precision: str = "fp32"  # which thresholds: fp32, or the auto-cast type
    prompt: str = ""
    seed: int = 0
    steps: int = 0  # num_inference_steps asked for (a scheduler may run more: PNDM's warm-up)
    scheduler: str = ""
    guidance_scale: float = 0.0
    height: int = 0
    width: int = 0
    images: str = ""  # its folder in the artifact: compiled.png, eager.png, difference.npy


@dataclass
class Validation:
    passed: Optional[bool] = None  # None: not validated (see `skipped`)
    atol: Optional[float] = None
    skipped: Optional[str] = None  # why it was not validated
    components: dict[str, bool] = field(default_factory=dict)  # pipelines: the verdict per component
    image_check: Optional[ImageCheck] = None  # pipelines: the end-to-end image check (None: not run)

    def __post_init__(self) -> None:
        if isinstance(self.image_check, dict):  # read from JSON
            self.image_check = ImageCheck(**self.image_check)


@dataclass
class BucketRecord:
    """One compiled shape of a bucketed model: its values of the bucketed axes, verdict and compile time."""

    name: str  # "32", "512x512": the bucket's key
    shapes: dict[str, int]  # the bucketed axes' values, e.g. {"sequence_length": 32}
    inputs: list[TensorSpec] = field(default_factory=list)  # its static inputs (a pipeline's root: none)
    location: str = ""  # where the backend stored it: a model inside model_file, or a file of the folder
    validation: Validation = field(default_factory=Validation)
    compile_s: Optional[float] = None  # its trace and compile stages (a pipeline's root: all its components')


@dataclass
class Bucketing:
    """How calls of a bucketed model meet its buckets."""

    axes: list[str]  # the bucketed shape options, e.g. ["sequence_length"] or ["height", "width"]
    fit: str  # "pad": the smallest bucket that fits, padded; "exact": the bucket of the call's size
    outputs: dict[str, list[Optional[str]]] = field(default_factory=dict)  # per output, the bucketed axis of each dim
    shared_weights: bool = False  # the buckets' model file stores the weights once
    weights_note: str = ""  # what the backend did with the weights, in words


@dataclass
class Manifest:
    # what was compiled
    source: str  # hub id, folder or demo:NAME, as the user named it
    library: str  # transformers | sentence_transformers | diffusers
    model_type: str
    task: str
    shapes: dict[str, int]  # the resolved shape options
    # how, and where it runs
    backend: str
    backend_reason: str
    is_neuron: bool
    device: str
    target: Optional[str]  # the Neuron instance type it was compiled for
    runs_on: str  # in words, for every screen
    torch_version: str
    compiler: str
    options: ExportOptions
    dynamic_batch: bool = False
    auto_cast: str = "none"
    auto_cast_type: Optional[str] = None
    optlevel: int = 2
    cpu_capability: Optional[str] = None  # the vector ISA its CPU kernels were built for
    cpu_isa: Optional[str] = None  # --cpu_isa of an artifact with machine code of its own (inductor)
    cpu_flags: list[str] = field(default_factory=list)  # CPU flags that code needs; loading checks them
    threads: Optional[int] = None  # threads its GEMM kernels are split for (None: any count, set at run time)
    # NeuronCores it is placed on at load: [0, 1] for a data-parallel component (the SD UNet's CFG halves
    # on separate cores), [0] otherwise; [] for portable builds. A pipeline's: those of its components.
    neuron_cores: list[int] = field(default_factory=list)
    # one compiled model ...
    component: Optional[str] = None
    model_file: Optional[str] = None
    inputs: list[TensorSpec] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    # ... or a pipeline of components (folders beside this manifest)
    pipeline_class: Optional[str] = None
    components: list[str] = field(default_factory=list)
    # results
    validation: Validation = field(default_factory=Validation)
    warnings: list[str] = field(default_factory=list)
    # weights the checkpoint did not provide for this task (random, or another task's head): the
    # compiled model matches eager PyTorch, but its outputs are meaningless until fine-tuned
    untrained_weights: list[str] = field(default_factory=list)
    # LoRAs fused into its weights at compile time: model_id (folder), weight_name, adapter_name, scale, sha256
    loras: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    compile_cache: Optional[dict[str, Any]] = None
    # several static shapes (bucketing.py): every compiled one, and how calls meet them
    buckets: list[BucketRecord] = field(default_factory=list)
    bucketing: Optional[Bucketing] = None
    format_version: int = FORMAT_VERSION
    tool: str = ""
    created: str = ""

    @property
    def is_pipeline(self) -> bool:
        return bool(self.components)

    @property
    def input_names(self) -> list[str]:
        return [spec.name for spec in self.inputs]

    @property
    def batch_size(self) -> int:
        """The compiled batch size: of the first input, or the pipeline's prompts per call."""
        return int(self.shapes["batch_size"]) if self.is_pipeline else int(self.inputs[0].shape[0])

    @property
    def is_bucketed(self) -> bool:
        return bool(self.buckets)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["options"] = self.options.to_dict()
        data["format_version"] = BUCKETS_FORMAT if self.buckets else FORMAT_VERSION
        return data

    @classmethod
    def from_dict(cls, data: Any, where: str = "manifest") -> "Manifest":
        """A manifest from its JSON form; ArtifactError naming what is wrong."""
        if not isinstance(data, dict):
            raise ArtifactError(f"{where} is not a JSON object")
        if data.get("format_version") not in READABLE_FORMATS:
            raise ArtifactError(f"{where} has manifest format {data.get('format_version')}, this tool reads "
                                f"{' and '.join(map(str, READABLE_FORMATS))}")
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        try:
            values["options"] = ExportOptions.from_dict(_mapping(data.get("options", {}), "options"))
            values["inputs"] = [TensorSpec(**_mapping(spec, "inputs")) for spec in data.get("inputs") or []]
            values["validation"] = Validation(**_mapping(data.get("validation") or {}, "validation"))
            values["buckets"] = [_bucket(_mapping(bucket, "buckets")) for bucket in data.get("buckets") or []]
            values["bucketing"] = Bucketing(**_mapping(data["bucketing"], "bucketing")) if data.get("bucketing") else None
            manifest = cls(**values)
        except (TypeError, ValueError, NeuronExportError) as error:
            raise ArtifactError(f"{where} is not a valid manifest: {first_line(error)}") from None
        required = ("inputs", "outputs") if manifest.buckets else ("model_file", "inputs", "outputs")
        missing = [name for name in required if not manifest.is_pipeline and not getattr(manifest, name)]
        if missing:
            raise ArtifactError(f"{where} is not a valid manifest: it lists no {', '.join(missing)}")
        for name in ([manifest.model_file] if manifest.model_file else []) + list(manifest.components):
            if not isinstance(name, str) or not PLAIN_NAME.match(name) or name in (".", ".."):
                raise ArtifactError(f"{where} is not a valid manifest: {name!r} is not a file name inside the artifact")
        return manifest

    @classmethod
    def read(cls, folder: str | Path) -> "Manifest":
        folder = Path(folder)
        file = folder / MANIFEST
        if not file.is_file():
            from ..optimum_neuron import read_optimum_manifest  # a folder optimum-neuron compiled

            imported = read_optimum_manifest(folder) if folder.is_dir() else None
            if imported is not None:
                return imported
            raise ArtifactError(f"{folder} is not a compiled artifact (no {MANIFEST})")
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ArtifactError(f"{file} is corrupt: {first_line(error)}") from None
        return cls.from_dict(data, str(file))

    def write(self, folder: Path) -> None:
        write_json(folder / MANIFEST, self.to_dict())


def _bucket(data: dict[str, Any]) -> BucketRecord:
    values = dict(data)
    values["inputs"] = [TensorSpec(**_mapping(spec, "bucket inputs")) for spec in data.get("inputs") or []]
    values["validation"] = Validation(**_mapping(data.get("validation") or {}, "bucket validation"))
    return BucketRecord(**values)


def _mapping(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be an object, got {type(value).__name__}")
    return value


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")


def read_manifest(path: str | Path) -> Manifest:
    return Manifest.read(path)


def read_validation(path: str | Path) -> Optional[dict[str, Any]]:
    """An artifact's validation report (None when it has none); ArtifactError when it is damaged."""
    file = Path(path) / VALIDATION_REPORT
    if not file.is_file():
        return None
    try:
        report = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ArtifactError(f"{file} is corrupt: {first_line(error)}") from None
    outputs = report.get("outputs") if isinstance(report, dict) else None
    if not isinstance(outputs, list) or not all(isinstance(o, dict) and REPORT_OUTPUT_FIELDS <= set(o) for o in outputs) \
            or not REPORT_FIELDS <= set(report):
        raise ArtifactError(f"{file} is not a validation report of this tool")
    return report
