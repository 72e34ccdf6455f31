"""The Backend protocol: one pipeline, pluggable compilers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Protocol, Sequence

import torch

from ..artifact.manifest import Manifest
from ..options import ExportOptions

# A loaded compiled model: positional tensors in, a tuple of tensors out. A Neuron runner also says
# where it was placed: `cores` (NeuronCore ids) and `replicas` (data-parallel copies, each taking the
# compiled batch, so one call takes replicas x the compiled batch).
Runner = Callable[..., Sequence[torch.Tensor]]


@dataclass(frozen=True)
class HostSupport:
    """What a backend can do on this host: None, or why not with the fix, for compiling and for running."""

    compile: Optional[str] = None
    run: Optional[str] = None
    note: str = ""  # e.g. where it runs, or that it cross-compiles only


@dataclass
class SavedBuckets:
    """Where Backend.save_buckets put the buckets of a model, and what it did with the weights."""

    model_file: Optional[str]  # one file holding every bucket, or None: a file per bucket
    locations: dict[str, str]  # bucket name -> a model inside model_file, or a file of the folder
    shared_weights: bool  # the weights are stored once for all buckets
    weights_note: str  # what was done with the weights, for the log and the manifest


class Backend(Protocol):
    """What a compiler plugs into the one export pipeline. Nothing outside a backend asks for its
    name: it declares what the rest needs to know (is_neuron, where it runs, what it ignores)."""

    name: str
    model_file: str  # file name of the compiled model inside the artifact folder
    is_neuron: bool  # its artifacts run on NeuronCores only (never presented otherwise)
    # True when the compiled model itself takes any batch size with --dynamic-batch-size;
    # otherwise CompiledModel splits/pads calls into chunks of the compiled batch.
    native_dynamic_batch: bool
    # True when its loaded model keeps state inputs (KV caches) on its device itself: the runner then
    # exposes them as `.state` and takes the other inputs only. Otherwise CompiledModel allocates them
    # and passes them with every call, and the compiled graph updates them in place.
    holds_state: bool
    # Its CPU artifacts are machine code of their own, built for an ISA level (--cpu_isa, --threads apply).
    records_cpu_isa: bool

    def unavailable_reason(self, options: ExportOptions) -> Optional[str]:
        """None when this host can compile with these options, else one line saying why not and what to do."""

    def runs_on(self, options: ExportOptions) -> str:
        """Where the artifact can run, in words, for the manifest and every screen."""

    def compiler_version(self) -> str: ...

    def device(self, options: ExportOptions) -> str:
        """The torch device the artifact's inputs go to ("cpu" for Neuron: torch-neuronx takes CPU tensors)."""

    def target(self, options: ExportOptions) -> Optional[str]:
        """The Neuron instance type it compiles for, or None for a portable build."""

    def option_warnings(self, options: ExportOptions) -> list[str]:
        """Options this backend ignores, as warnings (an option that would change the result is
        refused by unavailable_reason instead)."""

    def quantization_problem(self, options: ExportOptions) -> Optional[str]:
        """None when this backend can compile --quantize as asked (or nothing is asked), else one line
        saying why not and what it offers instead."""

    def validation_problem(self, options: ExportOptions) -> Optional[str]:
        """None when an artifact compiled with these options can be validated on this host, else why not."""

    def prepare(self, module: torch.nn.Module, options: ExportOptions) -> torch.nn.Module:
        """Apply what this backend captures in the graph itself (auto-cast, device placement)."""

    def trace(self, module: torch.nn.Module, example: tuple[torch.Tensor, ...], options: ExportOptions) -> Any: ...

    def compile(
        self, traced: Any, example: tuple[torch.Tensor, ...], options: ExportOptions, model_path: Path, workdir: Optional[Path],
        model_kind: str = "generic", state_inputs: int = 0, data_parallel: bool = False,
    ) -> None:
        """Compile and write the model file; model_kind (generic, transformer, unet-inference) tunes neuronx-cc;
        the last `state_inputs` example tensors are state the graph updates in place (KV caches);
        data_parallel: the model will be spread over several cores at load (see cores())."""

    def annotate_manifest(self, manifest: Manifest, options: ExportOptions, model_path: Path) -> None:
        """Record in the manifest what only the built model file tells (the CPU flags its code needs, ...)."""

    def load(self, model_path: Path, manifest: Manifest) -> Runner: ...

    # Buckets (several static shapes of one model, bucketing.py): the buckets are traced from one
    # eager module, compiled one by one, then saved together, sharing weights where the format allows.

    def compile_bucket(
        self, traced: Any, example: tuple[torch.Tensor, ...], options: ExportOptions, workdir: Optional[Path], model_kind: str = "generic",
    ) -> Any:
        """Compile one bucket's trace and keep the result (in memory or in temporary files) for save_buckets."""

    def save_buckets(self, compiled: dict[str, Any], folder: Path, options: ExportOptions) -> SavedBuckets:
        """Write every compiled bucket (name -> compile_bucket's result, smallest first) into `folder`."""

    def load_buckets(self, folder: Path, manifest: Manifest) -> dict[str, Callable[[], Runner]]:
        """For each bucket of the manifest, a function giving its runner (called when the bucket is first used)."""

    def runtime_problem(self, manifest: Manifest) -> Optional[str]:
        """None when an artifact with this manifest can run on this host, else why not."""

    def cores(self, data_parallel: bool) -> list[int]:
        """The accelerator cores a component is placed on at load ([] for the portable backends); a
        data-parallel one (the SD UNet) is compiled for one core and copied to each of them."""

    def host_support(self) -> HostSupport:
        """Whether this host can compile with it, and run what it compiles (for `neuron-export doctor`)."""


def cast_dtype(options: ExportOptions) -> Optional[torch.dtype]:
    """The low-precision dtype of auto-cast, or None when auto-cast is off."""
    if options.cast_type is None:
        return None
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "tf32": torch.float32}[options.cast_type]
