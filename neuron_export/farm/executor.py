"""RayExecutor: an export's independent units as Ray tasks.

Units: each component of a pipeline (the SD / SDXL text encoders, UNet, VAE encoder and decoder)
is a task; a component compiled at several buckets gets a task per bucket (load, trace, compile
that bucket) and one that saves the buckets together and validates them. Every task re-creates
nothing from names: it gets the plan itself (Ray pickles it; its loaders read the model folder,
which must be reachable from every node) and writes into a scratch folder of its own under the
export's staging folder (on shared storage for a multi-node cluster), removed and rebuilt when Ray
retries it. The driver moves finished units into place; export() then writes the root manifest
and publishes, as for a local build, so an interruption anywhere leaves nothing under OUTPUT.

Resources per task: one CPU, NEURON_EXPORT_RAY_MEMORY_GB of memory (default 2) and, when the
export compiles and validates for a Neuron device on the spot (neuron backend without
--instance_type), one `neuron_cores` (Ray's built-in AWS Neuron resource), so those tasks run on
inf2 nodes while --instance_type compiles go to any CPU node.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..artifact import Manifest
from ..errors import NeuronExportError, first_line
from ..export.buckets import compile_one_bucket, save_bucketed_component
from ..export.build import build_components, prepare_module
from ..export.plan import ExportPlan
from ..options import ExportOptions
from ..progress import Progress
from ..validation import ValidationReport
from .cluster import connect, import_ray
from .shipping import ship, unship_buckets

log = logging.getLogger("neuron_export")

MEMORY_ENV = "NEURON_EXPORT_RAY_MEMORY_GB"
UNITS = ".units"  # inside the staging folder: each task's scratch folder
RETRIES = 1  # a task whose worker died (killed, out of memory) runs once more
INDUCTOR_CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"


@dataclass
class UnitResult:
    """What a component's task built (in its scratch folder) and how long each stage took."""

    manifests: dict[str, Manifest]
    reports: list[ValidationReport]
    timings: dict[str, float]
    scratch: str
    node: str = ""


@dataclass
class BucketResult:
    name: str
    compiled: Any  # shipping.ship() of Backend.compile_bucket's result
    compile_s: float
    timings: dict[str, float] = field(default_factory=dict)


class RayExecutor:
    """Builds a plan's units as Ray tasks on the cluster at `address` (None: a local one)."""

    def __init__(self, address: Optional[str] = None):
        import_ray()  # missing: one line naming the install, before anything is planned
        self.address = address

    def build(self, plan: ExportPlan, staging: Path, progress: Progress) -> tuple[dict[str, Manifest], list[ValidationReport]]:
        ray = connect(self.address)
        submitted = {}  # a component's final task -> (its index, every task of it)
        for index in range(len(plan.components)):
            final, refs = self._submit(ray, plan, index, staging)
            submitted[final] = (index, refs)
        tasks = sum(len(refs) for _, refs in submitted.values())
        _emit(progress, None, 0, len(submitted), f"{tasks} Ray tasks submitted for {len(submitted)} component(s)")
        results: dict[int, UnitResult] = {}
        try:
            pending = list(submitted)
            while pending:  # in the order they finish: a failed unit stops the others at once
                [ready], pending = ray.wait(pending, num_returns=1)
                index = submitted[ready][0]
                component_plan = plan.components[index]
                results[index] = self._result(ray, component_plan, ready)
                _emit(progress, component_plan.folder or None, len(results), len(submitted),
                      f"{component_plan.name}: built by a Ray task on node {results[index].node[:12]}")
        except BaseException:  # an interrupt, a failed unit: stop the others before staging is removed
            for _, refs in submitted.values():
                for ref in refs:
                    ray.cancel(ref, force=True)
            raise
        manifests, reports = {}, []
        for index, component_plan in enumerate(plan.components):  # the plan's order, as a local build
            result = results[index]
            _move_into_place(Path(result.scratch) / component_plan.folder, staging / component_plan.folder)
            manifests.update(result.manifests)
            reports += result.reports
            for key, seconds in result.timings.items():
                progress.timings[key] = progress.timings.get(key, 0.0) + seconds
        shutil.rmtree(staging / UNITS, ignore_errors=True)
        return manifests, reports

    def _submit(self, ray, plan: ExportPlan, index: int, staging: Path) -> tuple[Any, list[Any]]:
        component_plan = plan.components[index]
        scratch = str(staging / UNITS / f"{component_plan.name}-{uuid.uuid4().hex[:8]}")
        resources = unit_resources(plan)
        name = f"neuron_export:{component_plan.name}"
        if component_plan.bucketed and len(plan.buckets) > 1:
            compiles = [ray.remote(_compile_bucket_unit).options(name=f"{name}[{'x'.join(map(str, b.values()))}]", **resources)
                        .remote(plan, index, i) for i, b in enumerate(plan.buckets)]
            final = ray.remote(_save_buckets_unit).options(name=f"{name}:save", **resources).remote(plan, index, scratch, *compiles)
            return final, [*compiles, final]
        final = ray.remote(_component_unit).options(name=name, **resources).remote(plan, index, scratch)
        return final, [final]

    @staticmethod
    def _result(ray, component_plan, ref) -> UnitResult:
        from ray.exceptions import RayError, RayTaskError, TaskCancelledError

        try:
            return ray.get(ref)
        except RayTaskError as error:
            if isinstance(error.cause, NeuronExportError):
                raise error.cause from None
            raise NeuronExportError(f"building {component_plan.name} on Ray failed: {first_line(error.cause)}") from None
        except TaskCancelledError:
            raise KeyboardInterrupt from None
        except RayError as error:  # its worker died, also when Ray ran it again
            raise NeuronExportError(f"the Ray worker building {component_plan.name} died ({type(error).__name__}: killed, "
                                    f"or out of memory: raise ${MEMORY_ENV}); nothing was written") from None


def _emit(progress: Progress, component: Optional[str], done: int, total: int, message: str) -> None:
    """A stage event of the farm (the job store shows it as a step): which unit finished where."""
    log.info("[ray %d/%d] %s", done, total, message)
    progress.emit({"type": "stage", "stage": "ray", "component": component, "key": "ray", "index": done + 1,
                   "total": total + 1, "fraction": done / (total + 1), "message": message})


def unit_resources(plan: ExportPlan) -> dict[str, Any]:
    """Ray task options of one unit of `plan`."""
    return _task_options(plan.backend.is_neuron and not plan.options.instance_type)  # compiled and validated on a device


def entry_task_options(options: ExportOptions) -> dict[str, Any]:
    """Ray task options of a whole export (a sweep entry): a device when it may build for one."""
    from ..backends import get_backend

    if options.instance_type:  # compiled for a device elsewhere: any CPU node
        return _task_options(False)
    # auto picks neuron where a device is: on a cluster with NeuronCores, the entry goes where they are
    return _task_options(get_backend(options.backend).is_neuron if options.backend != "auto" else _cluster_has_neuron_cores())


def _task_options(on_device: bool) -> dict[str, Any]:
    try:
        memory = int(float(os.environ.get(MEMORY_ENV, "2")) * 2**30)
    except ValueError:
        raise NeuronExportError(f"${MEMORY_ENV}={os.environ[MEMORY_ENV]!r}: give the memory of one task in GB, e.g. 16") from None
    options: dict[str, Any] = {"num_cpus": 1, "memory": memory, "max_retries": RETRIES}
    if on_device:
        options["resources"] = {"neuron_cores": 1}
    return options


def _cluster_has_neuron_cores() -> bool:
    import ray

    return ray.cluster_resources().get("neuron_cores", 0) > 0


def _fresh(scratch: str) -> Path:
    folder = Path(scratch)
    shutil.rmtree(folder, ignore_errors=True)  # what an earlier attempt of this task left (Ray retried it)
    folder.mkdir(parents=True)
    return folder


def _node() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


def _component_unit(plan: ExportPlan, index: int, scratch: str) -> UnitResult:
    """Task: build one component (all its stages) into `scratch`."""
    single = dataclasses.replace(plan, components=[plan.components[index]])
    progress = Progress(None, single.stage_count)
    manifests, reports = build_components(single, _fresh(scratch), progress)
    return UnitResult(manifests, reports, progress.timings, scratch, _node())


def _compile_bucket_unit(plan: ExportPlan, index: int, bucket: int) -> BucketResult:
    """Task: load a bucketed component and trace and compile it at one bucket."""
    component_plan = plan.components[index]
    progress = Progress(None, 3)
    with progress.stage("loading", f"Loading {component_plan.name}", key=f"{component_plan.name}.loading"):
        component = component_plan.load()
    one = component.bucketing.buckets[bucket]
    with _own_inductor_cache():  # what the compiler writes travels as bytes (shipping.py), never as a path on this node
        compiled, seconds = compile_one_bucket(component, plan, one, progress, prepare_module(component, plan))
        shipped = ship(compiled)
    return BucketResult(one.name, shipped, seconds, progress.timings)


@contextlib.contextmanager
def _own_inductor_cache():
    """A temporary TORCHINDUCTOR_CACHE_DIR for one task, removed after it (--compiler_workdir still wins: the backend sets it)."""
    previous = os.environ.get(INDUCTOR_CACHE_ENV)
    with tempfile.TemporaryDirectory(prefix="neuron-export-bucket-") as folder:
        os.environ[INDUCTOR_CACHE_ENV] = folder
        try:
            yield
        finally:
            if previous is None:
                os.environ.pop(INDUCTOR_CACHE_ENV, None)
            else:
                os.environ[INDUCTOR_CACHE_ENV] = previous


def _save_buckets_unit(plan: ExportPlan, index: int, scratch: str, *buckets: BucketResult) -> UnitResult:
    """Task: save a component's compiled buckets together into `scratch`, then validate each."""
    component_plan = plan.components[index]
    progress = Progress(None, 2 + len(buckets))
    with progress.stage("loading", f"Loading {component_plan.name}", key=f"{component_plan.name}.loading"):
        component = component_plan.load()  # the eager reference validation compares with
    folder = _fresh(scratch) / component_plan.folder
    folder.mkdir(exist_ok=True)
    shipped = Path(f"{scratch}.shipped")  # beside the unit's folder, not in it: the compiler's files, until saved
    compiled = unship_buckets({b.name: b.compiled for b in buckets}, shipped)
    manifest, report = save_bucketed_component(component, plan, folder, progress, compiled, {b.name: b.compile_s for b in buckets})
    shutil.rmtree(shipped, ignore_errors=True)
    if component_plan.config_file is not None:
        shutil.copy2(component_plan.config_file, folder / "config.json")
    timings = dict(progress.timings)
    for b in buckets:
        timings.update(b.timings)
    return UnitResult({component.name: manifest}, [report] if report else [], timings, scratch, _node())


def _move_into_place(built: Path, final: Path) -> None:
    """A unit's folder into the staging folder (for a single model, whose folder is the staging folder itself: its files)."""
    if built.resolve() == final.resolve():
        return
    if final.exists() and final.is_dir() and not any(final.iterdir()):
        final.rmdir()
    if not final.exists():
        os.replace(built, final)
        return
    for path in built.iterdir():
        os.replace(path, final / path.name)
