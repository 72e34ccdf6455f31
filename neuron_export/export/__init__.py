"""export(): resolve the model, plan, then load -> trace -> compile -> save -> validate, publish atomically.

plan.py decides what will be compiled, transformers.py and diffusion.py produce the plans, build.py
carries them out, cache.py reuses earlier results.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..artifact import Manifest, check_output_dir, publish, staging, write_json
from ..artifact.folders import clean_stale, write_error
from ..diffusion.image_check import divergence, summary_line as image_check_line
from ..errors import NeuronExportError, first_line, out_of_memory
from ..options import ExportOptions
from ..progress import EventSink, Progress
from ..sources import resolve_model_source
from ..validation import ValidationReport
from .build import artifact_manifest, copy_model_files
from .cache import CompileCache
from .executor import Executor, LocalExecutor
from .plan import ExportPlan

log = logging.getLogger("neuron_export")


@dataclass
class ExportResult:
    artifact: Path
    manifest: Manifest
    reports: list[ValidationReport]
    timings: dict[str, float]
    warnings: list[str] = field(default_factory=list)
    cache_hit: bool = False

    @property
    def validation_passed(self) -> Optional[bool]:
        """True/False after validation, None when it was skipped."""
        return self.manifest.validation.passed

    @property
    def failed_checks(self) -> list[str]:
        """What failed validation, in words: outputs by name, the end-to-end image check with where it diverged."""
        failed = [o.name for r in self.reports for o in r.outputs if not o.passed]
        check = self.manifest.validation.image_check
        if check is not None and not check.passed:
            failed.append(f"the end-to-end image check ({divergence(check)})")
        return failed or ["output names"]


def export(model: str | Path, output: str | Path, options: Optional[ExportOptions] = None,
           on_event: Optional[EventSink] = None, executor: Optional[Executor] = None) -> ExportResult:
    """Compile `model` (hub id, local folder or demo:NAME) into the artifact folder `output`;
    `executor` builds the components (default: here, one after the other)."""
    options = options or ExportOptions()
    output = Path(output).expanduser().resolve()
    check_output_dir(output, options.force)  # refuse before loading anything
    plan = make_plan(model, options)
    check_output_dir(output, options.force, plan.cache_folders)  # never into (or around) the model itself
    clean_stale(output.parent)  # what killed exports left next to it
    try:
        return _export(plan, output, on_event, executor or LocalExecutor())
    except OSError as error:  # a full or read-only disk: one line; the staging folder is gone already
        problem = write_error(error, output)
        if problem is None:
            raise
        raise problem from None
    except (MemoryError, RuntimeError) as error:
        if not out_of_memory(error):
            raise
        shapes = ", ".join(f"{name} {value}" for name, value in plan.public_shapes.items())
        raise NeuronExportError(f"out of memory with {shapes}: use smaller shapes ({first_line(error, 120)})") from None


def _export(plan: ExportPlan, output: Path, on_event: Optional[EventSink], executor: Executor) -> ExportResult:
    if on_event is not None:  # what runs, as data: the job store files the job's timings under its real backend
        on_event({"type": "plan", "backend": plan.backend.name, "components": [c.folder or None for c in plan.components],
                  "total": plan.stage_count, "time": time.time()})
    cache, key = _cache_for(plan)
    if cache is not None:
        hit = _export_from_cache(cache, key, plan, output, on_event)
        if hit is not None:
            return hit
    progress = Progress(on_event, plan.stage_count)
    with staging(output) as folder:
        folder.mkdir()
        manifests, reports = executor.build(plan, folder, progress)
        for source, destination in plan.files:
            copy_model_files(source, folder / destination)
        if plan.model_index is not None:
            write_json(folder / "model_index.json", plan.model_index)
        manifest = artifact_manifest(plan, manifests, reports, progress.timings)
        if cache is not None:
            manifest.compile_cache = {"hit": False, "key": key}  # what a later hit re-checks
        manifest.write(folder)
        if plan.end_to_end is not None:
            check_end_to_end(plan, folder, manifest, progress)
        if cache is not None and manifest.validation.passed is not False:
            cache.store(key, folder)  # from what was built here, never from OUTPUT after publishing
        check_output_dir(output, plan.options.force, plan.cache_folders)
        publish(folder, output, replace=True)
    log.info("The compiled %s was saved at: %s", "pipeline" if plan.source.library == "diffusers" else "model", output)
    return ExportResult(output, manifest, reports, progress.timings, plan.warnings)


def check_end_to_end(plan: ExportPlan, folder: Path, manifest: Manifest, progress: Progress) -> None:
    """The pipeline's end-to-end check on the staging folder, recorded in its manifest: a failure fails
    the export like a failed component (exit 1, the artifact and its reports kept)."""
    progress.component = "pipeline"  # the stage event's part: the whole pipeline
    if manifest.validation.passed is False:
        log.info("End-to-end image check: not run (a component failed its own check)")
        return
    with progress.stage("validating", "Checking the whole pipeline's images against eager diffusers", key="pipeline.validating"):
        check = plan.end_to_end(folder)
    log.info("%s", image_check_line(check))
    manifest.validation.image_check = check
    manifest.validation.passed = check.passed
    manifest.write(folder)


def make_plan(model: str | Path, options: ExportOptions) -> ExportPlan:
    """What exporting `model` with these options will compile (reads configs only)."""
    from ..registry import get_architecture
    from .diffusion import plan_diffusion
    from .generation import plan_generation
    from .transformers import plan_transformers

    source = resolve_model_source(model, options)
    if source.library == "diffusers":
        return plan_diffusion(source, options)
    if options.lora_model_ids:
        raise NeuronExportError(f"--lora_model_ids: {source.origin} is not a diffusion pipeline; LoRAs are fused into Stable Diffusion only")
    if options.controlnet_ids:
        raise NeuronExportError(f"--controlnet_ids: {source.origin} is not a diffusion pipeline; ControlNets are added to Stable Diffusion only")
    if not options.classifier_free_guidance:
        raise NeuronExportError(f"--no-classifier-free-guidance: {source.origin} is not a diffusion pipeline; it applies to Stable Diffusion only")
    planner = plan_generation if get_architecture(source.model_type).family.generative else plan_transformers
    return planner(source, options)


def _cache_for(plan: ExportPlan) -> tuple[Optional[CompileCache], Optional[str]]:
    options = plan.options
    if not options.use_cache:
        return None, None
    if options.compiler_workdir:
        log.info("--compiler_workdir: compiling without the compile cache, so the compiler's files are written")
        return None, None
    cache = CompileCache()
    shapes = {**plan.shapes, "buckets": plan.buckets} if plan.buckets else plan.shapes  # several static shapes
    return cache, cache.key(plan.cache_folders, plan.source.library, plan.task, shapes, plan.backend, options)


def _export_from_cache(cache: CompileCache, key: str, plan: ExportPlan, output: Path, on_event) -> Optional[ExportResult]:
    """OUTPUT from the compile cache entry `key` (same staging/publish rules as a compile), or None on a miss."""
    start = time.perf_counter()
    expected = {"task": plan.task, "backend": plan.backend.name, "shapes": plan.public_shapes}
    with staging(output) as folder:
        manifest = cache.restore(key, folder, expected)
        if manifest is None:
            return None
        progress = Progress(on_event, 1)
        message = f"Compile cache hit: reusing the artifact compiled {manifest.created} (pass --no-cache to recompile)"
        with progress.stage("cache", message):
            # What this request asked for; the rest of the manifest describes the compile that made it.
            manifest.source, manifest.warnings, manifest.options = plan.source.origin, plan.warnings, plan.options
            manifest.compile_cache = {"hit": True, "key": key}
            manifest.write(folder)
            check_output_dir(output, plan.options.force, plan.cache_folders)
            publish(folder, output, replace=True)
    validation = manifest.validation
    log.info("Validated against eager PyTorch when compiled: %s",
             f"passed (atol {validation.atol})" if validation.passed else f"skipped ({validation.skipped})")
    if validation.image_check is not None:
        log.info("%s", image_check_line(validation.image_check))
    log.info("The compiled model was saved at: %s", output)
    return ExportResult(output, manifest, [], {"cache": time.perf_counter() - start}, plan.warnings, cache_hit=True)


__all__ = ["export", "make_plan", "ExportResult", "ExportPlan", "CompileCache"]
