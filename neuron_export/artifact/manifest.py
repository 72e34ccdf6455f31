"""The manifest of an artifact folder: what was compiled, how, where it runs, and its verdict.

One typed record, read and written here only. A single compiled model lists its inputs and outputs;
a pipeline (Stable Diffusion) lists its components, each a folder with a manifest of its own.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..errors import ArtifactError, NeuronExportError, first_line
from ..options import ExportOptions

MANIFEST = "manifest.json"
VALIDATION_REPORT = "validation.json"
FORMAT_VERSION = 1
# Written by every manifest of this tool: --force replaces only folders that carry it.
TOOL_MARKER = "neuron_export"


@dataclass
class TensorSpec:
    """A compiled input: its static shape, dtype and the shape option behind each axis."""

    name: str
    shape: list[int]
    dtype: str
    axes: list[str]


@dataclass
class Validation:
    passed: Optional[bool] = None  # None: not validated (see `skipped`)
    atol: Optional[float] = None
    skipped: Optional[str] = None  # why it was not validated
    components: dict[str, bool] = field(default_factory=dict)  # pipelines: the verdict per component


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
    timings: dict[str, float] = field(default_factory=dict)
    compile_cache: Optional[dict[str, Any]] = None
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

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["options"] = self.options.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Any, where: str = "manifest") -> "Manifest":
        """A manifest from its JSON form; ArtifactError naming what is wrong."""
        if not isinstance(data, dict):
            raise ArtifactError(f"{where} is not a JSON object")
        if data.get("format_version") != FORMAT_VERSION:
            raise ArtifactError(f"{where} has manifest format {data.get('format_version')}, this tool reads {FORMAT_VERSION}")
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        try:
            values["options"] = ExportOptions.from_dict(_mapping(data.get("options", {}), "options"))
            values["inputs"] = [TensorSpec(**_mapping(spec, "inputs")) for spec in data.get("inputs") or []]
            values["validation"] = Validation(**_mapping(data.get("validation") or {}, "validation"))
            manifest = cls(**values)
        except (TypeError, ValueError, NeuronExportError) as error:
            raise ArtifactError(f"{where} is not a valid manifest: {first_line(error)}") from None
        missing = [name for name in ("model_file", "inputs", "outputs") if not manifest.is_pipeline and not getattr(manifest, name)]
        if missing:
            raise ArtifactError(f"{where} is not a valid manifest: it lists no {', '.join(missing)}")
        return manifest

    @classmethod
    def read(cls, folder: str | Path) -> "Manifest":
        folder = Path(folder)
        file = folder / MANIFEST
        if not file.is_file():
            raise ArtifactError(f"{folder} is not a compiled artifact (no {MANIFEST})")
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ArtifactError(f"{file} is corrupt: {first_line(error)}") from None
        return cls.from_dict(data, str(file))

    def write(self, folder: Path) -> None:
        write_json(folder / MANIFEST, self.to_dict())


def _mapping(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be an object, got {type(value).__name__}")
    return value


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")


def read_manifest(path: str | Path) -> Manifest:
    return Manifest.read(path)


def read_validation(path: str | Path) -> Optional[dict[str, Any]]:
    file = Path(path) / VALIDATION_REPORT
    return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else None
