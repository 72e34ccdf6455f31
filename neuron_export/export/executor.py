"""Where an export's components are built: here, one after the other (local, the default), or as
tasks on a Ray cluster (neuron_export/farm). export() hands the plan and its staging folder to one
Executor; whichever builds, the artifact is assembled and published by export() alone."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Protocol

from ..artifact import Manifest
from ..errors import NeuronExportError
from ..progress import Progress
from ..validation import ValidationReport
from .build import build_components
from .plan import ExportPlan

EXECUTORS = ("local", "ray")


class Executor(Protocol):
    def build(self, plan: ExportPlan, staging: Path, progress: Progress) -> tuple[dict[str, Manifest], list[ValidationReport]]:
        """Every component of the plan built into its folder of `staging`: (manifests by component, reports)."""


class LocalExecutor:
    """This process, one component's weights at a time (build_components)."""

    def build(self, plan: ExportPlan, staging: Path, progress: Progress) -> tuple[dict[str, Manifest], list[ValidationReport]]:
        return build_components(plan, staging, progress)


def make_executor(name: str, address: Optional[str] = None) -> Executor:
    """The executor called `name` (EXECUTORS); `address`: the Ray cluster's (None: a local one)."""
    if name == "local":
        if address:
            raise NeuronExportError("--ray_address needs --executor ray")
        return LocalExecutor()
    if name == "ray":
        from ..farm.executor import RayExecutor

        return RayExecutor(address)
    raise NeuronExportError(f"--executor {name}: choose one of {', '.join(EXECUTORS)}")
