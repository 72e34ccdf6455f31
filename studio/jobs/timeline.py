"""A job's progress in plain words, and how long it should take from earlier jobs of the same work
on this host (the job store's own rows and stage timelines). Pure functions of Job rows: the Compile
and Jobs pages show them through one component (studio.ui.job_progress), and they are unit-tested.

A job row from before the stage timeline came in (no `stages`, no `backend`) still reads: its stage
and message columns stand for the words, and its start and finish times count as history.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Optional

from .store import Job, JobStatus

# What a stage does to a part of the model, in words ({what}: "the UNet", "the model").
STAGE_WORDS = {
    "loading": "loading {what}",
    "tracing": "tracing {what}",
    "compiling": "compiling {what}",
    "saving": "saving {what}",
    "validating": "checking {what} against the original",
    "cache": "copying {what} from the compile cache",
    "onnx": "exporting {what} to ONNX for the comparison",
    "timing": "timing {what}",
    "ray": "{what} built on the Ray farm",
}
# Component name parts written as people write them.
_PART_WORDS = {"unet": "UNet", "vae": "VAE", "clip": "CLIP", "t5": "T5"}
# Options that change where an artifact goes, not the work a compile does.
_NOT_WORK = ("force", "compiler_workdir", "cache_dir", "backend")
QUEUED_WORDS = "waiting for a free compile slot"


def fmt_duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest:02d} s"


def component_name(component: Optional[str]) -> str:
    """"unet" -> "UNet", "vae_decoder" -> "VAE decoder"; None (a single model) -> "model"."""
    if not component:
        return "model"
    return " ".join(_PART_WORDS.get(part, part) for part in component.split("_"))


def component_words(component: Optional[str]) -> str:
    """"unet" -> "the UNet": a component as a sentence names it."""
    return f"the {component_name(component)}"


def step_words(step: dict) -> str:
    """One timeline step in words: "compiling the UNet, step 8 of 20"."""
    template = STAGE_WORDS.get(step.get("stage"), f"{step.get('stage')} {{what}}")
    words = template.format(what=component_words(step.get("component")))
    return f"{words}, step {step['index']} of {step['total']}" if step.get("total") else words


def stage_words(job: Job) -> str:
    """What the job is doing (or where it stopped), lower case."""
    if job.status == JobStatus.QUEUED:
        return QUEUED_WORDS
    if job.status == JobStatus.SUCCEEDED:
        return "done"
    if job.stages:
        now = step_words(job.stages[-1])
    else:  # a row from before the timeline, or a command that reports no steps
        now = (job.message or job.stage or "").rstrip(".…") or None
        now = now[:1].lower() + now[1:] if now else None
    if job.status == JobStatus.RUNNING:
        return now or "starting"
    return f"stopped while {now}" if now else str(job.status)


def step_durations(job: Job, now: Optional[float] = None) -> list[tuple[dict, float]]:
    """Each step of the timeline with the seconds it took (the last one: until the job finished, or now)."""
    ends = [step["at"] for step in job.stages[1:]] + [job.finished_at or (now or time.time())]
    return [(step, max(0.0, end - step["at"])) for step, end in zip(job.stages, ends)]


def work_key(job: Job) -> Optional[tuple]:
    """What makes two jobs the same work: kind, model, task and the options that change the compile
    (shapes, casts, levels; not the backend, compared apart). None: the job does not say (no metadata)."""
    metadata = job.metadata or {}
    if not metadata.get("model"):
        return None
    options = {name: value for name, value in (metadata.get("options") or {}).items() if name not in _NOT_WORK}
    return job.kind, metadata["model"], metadata.get("task"), repr(sorted(options.items()))


def backend_of(job: Job, auto_pick: Optional[str]) -> Optional[str]:
    """The backend a job ran (or runs) with: recorded by the engine, else as the form resolved it at
    submit, else asked for, else what `auto` picks on this host (`auto_pick`: an older row ran here)."""
    metadata = job.metadata or {}
    if job.backend or metadata.get("backend"):
        return job.backend or metadata["backend"]
    asked = (metadata.get("options") or {}).get("backend")
    return auto_pick if asked in (None, "auto") else asked


@dataclasses.dataclass(frozen=True)
class Estimate:
    """How long a job should take, from `count` earlier jobs of the same work and backend here."""

    count: int
    typical_s: Optional[float]  # their median duration; None: no history yet
    remaining_s: Optional[float]  # what is left of this one (negative: it takes longer than they did)


def _step_start(job: Job, index: int) -> Optional[float]:
    return next((step["at"] for step in job.stages if step["index"] == index), None)


def estimate(job: Job, history: list[Job], auto_pick: Optional[str], now: Optional[float] = None) -> Optional[Estimate]:
    """The estimate of `job` from the succeeded jobs of `history` that did the same work with the same
    backend (compile-cache hits left out); None if the job does not say what work it is."""
    key, backend, now = work_key(job), backend_of(job, auto_pick), now or time.time()
    if key is None:
        return None
    past = [p for p in history if p.id != job.id and p.status == JobStatus.SUCCEEDED and p.started_at and p.finished_at
            and work_key(p) == key and backend_of(p, auto_pick) == backend
            and not any(step.get("stage") == "cache" for step in p.stages)]
    if not past:
        return Estimate(0, None, None)
    typical = statistics.median(p.finished_at - p.started_at for p in past)
    if job.status == JobStatus.QUEUED:
        return Estimate(len(past), typical, typical)
    elapsed = (job.finished_at or now) - (job.started_at or now)
    remaining = typical - elapsed
    if job.stages:  # from the same step of the earlier jobs: stages differ in length (a UNet compiles longest)
        step = job.stages[-1]
        left = [p.finished_at - start for p in past if p.stages and p.stages[-1].get("total") == step.get("total")
                and (start := _step_start(p, step["index"])) is not None]
        if left:
            remaining = statistics.median(left) - (now - step["at"])
    return Estimate(len(past), typical, remaining)


def estimate_words(est: Optional[Estimate], job: Job, auto_pick: Optional[str]) -> Optional[str]:
    """The estimate in a sentence, saying what it is based on; None when the job has nothing to base one on."""
    if est is None:
        return None
    model = job.metadata.get("model")
    backend = backend_of(job, auto_pick) or "its backend"
    same = f"{model} with the same options on {backend}"
    if est.typical_s is None:
        return f"No estimate yet: no earlier job of {same} has finished on this host (the next one will have one)."
    based = f"median of {est.count} earlier job{'s' if est.count > 1 else ''} of {same} on this host"
    if job.status == JobStatus.QUEUED:
        return f"Takes about {fmt_duration(est.typical_s)} once it starts ({based})."
    if est.remaining_s > 0:
        return f"About {fmt_duration(est.remaining_s)} left; usually {fmt_duration(est.typical_s)} in all ({based})."
    return f"Taking longer than usual: usually {fmt_duration(est.typical_s)} in all ({based})."
