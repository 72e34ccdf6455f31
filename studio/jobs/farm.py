"""The compile farm as the dashboard uses it: export jobs run as Ray jobs on a Ray cluster.

Where: the System page's setting (stored in the job store, so every server process and worker of
the workspace sees it), else $NEURON_EXPORT_RAY_ADDRESS, else nowhere (local subprocesses, the
default). The dispatcher tags an export job with the farm's address when it starts it; the job's
worker then submits the job's own command line, `--executor ray --ray_address auto` appended, as a
Ray job (Ray Job Submission) whose submission id is `neuron-export-JOBID`, and follows it (logs,
events, state). The Ray job's driver runs on the cluster's head node, so it outlives this server:
after a restart the dispatcher starts a worker that follows it again. Its components run as Ray
tasks of that Ray job, which is how the Jobs page finds them (Ray's state API, by job id).

The workspace (events file, OUTPUT, model folders, compile cache) must be at the same path on the
head node: the same host, or shared storage. Ray is imported only here, and only when a farm is used.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from neuron_export.errors import NeuronExportError
from studio.environment import PRIVATE_ENV

from .commands import PROJECT_ROOT, RAY_ADDRESS_ENV

if TYPE_CHECKING:
    from .store import Job, JobStore

ADDRESS_SETTING = "ray_address"
LOCAL = "local"  # the setting that runs jobs here even when $NEURON_EXPORT_RAY_ADDRESS names a cluster
FARM = "farm"  # the job metadata key: {"address", "submission_id", "submitted", "log_copied"}
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
_ADDRESS = re.compile(r"^(https?://)?[A-Za-z0-9.\-\[\]:]+:\d{1,5}$")
_PASSED_ENV = ("NEURON_EXPORT_", "HF_", "TRANSFORMERS_", "TORCH", "OMP_")  # what the Ray job's driver needs of ours
_SECRET = re.compile(r"TOKEN|SECRET|PASSWORD")  # never passed: Ray's jobs API shows a job's runtime_env to anyone
CONNECT_TIMEOUT_S = 3.0


def farm_address(store: JobStore) -> Optional[str]:
    """The Ray cluster new export jobs go to: the System page's setting, else the environment's; None: here."""
    saved = store.setting(ADDRESS_SETTING)
    if saved == LOCAL:
        return None
    return saved or os.environ.get(RAY_ADDRESS_ENV) or None


def where_jobs_run(store: JobStore) -> str:
    """A sentence: where new export jobs run, and which setting says so."""
    saved, env = store.setting(ADDRESS_SETTING), os.environ.get(RAY_ADDRESS_ENV)
    overrides = f" (it overrides ${RAY_ADDRESS_ENV}={env})" if env and env != saved else ""
    if saved == LOCAL:
        return f"New export jobs run here, as local processes, as set on this page{overrides}."
    if saved:
        return f"New export jobs run on the Ray cluster at {saved}, as set on this page{overrides}."
    if env:
        return f"New export jobs run on the Ray cluster at {env}, from ${RAY_ADDRESS_ENV}."
    return "New export jobs run here, as local processes (the default)."


def check_address(address: str) -> str:
    """`address` stripped if it looks like a Ray address (HEAD:6379, or the dashboard's http://HEAD:8265)."""
    address = address.strip()
    if not _ADDRESS.match(address):
        raise NeuronExportError(f"{address!r} is not a Ray address: give HOST:PORT of the head node (its GCS, e.g. "
                                "10.0.0.5:6379) or its dashboard (http://10.0.0.5:8265)")
    return address


def submission_id(job_id: str) -> str:
    return f"neuron-export-{job_id}"


def tag_farm_job(job: Job, address: str) -> dict:
    """The metadata of `job` once it is to run on the farm at `address`."""
    return {**job.metadata, FARM: {"address": address, "submission_id": submission_id(job.id), "submitted": False}}


def farm_of(job: Job) -> Optional[dict]:
    """The farm record of a job that runs on a Ray cluster, else None."""
    return job.metadata.get(FARM) if isinstance(job.metadata.get(FARM), dict) else None


@dataclass(frozen=True)
class TaskRow:
    task: str  # the task's name without the "neuron_export:" prefix: COMPONENT or COMPONENT[BUCKET]
    state: str  # Ray's: PENDING_NODE_ASSIGNMENT, RUNNING, FINISHED, FAILED, ...
    node: str  # the node's address (its id's start when Ray does not know it)
    attempt: int  # 0, or how many times Ray ran it again (its worker died)


class FarmClient:
    """Ray Job Submission and Ray's state API for the cluster at `address`; every failure one line."""

    def __init__(self, address: str):
        from neuron_export.farm.cluster import import_ray, is_loopback, pin_loopback

        self.address = check_address(address)
        import_ray()
        _probe(self.address)  # refused or unreachable: one line at once, not Ray's minute of retries
        if is_loopback(self.address):
            pin_loopback()  # else Ray rewrites 127.0.0.1 to the host's external address, where nothing listens
        from ray.job_submission import JobSubmissionClient

        self._client = self._call(JobSubmissionClient, self.address)

    def _call(self, function, *args, **kwargs) -> Any:
        from ray.util.state.exception import RayStateApiException  # ServerUnavailable is one; Ray is imported by now

        try:
            return function(*args, **kwargs)
        except (ConnectionError, RuntimeError, ValueError, TimeoutError, OSError, RayStateApiException) as error:
            reason = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
            raise NeuronExportError(f"the Ray cluster at {self.address}: {reason[:240]}") from None

    def submit(self, sid: str, entrypoint: str, env: dict[str, str]) -> None:
        """Start the Ray job `sid` (a job of that id already submitted, e.g. by a worker that died since, is followed instead)."""
        if self.status(sid, missing=None) is None:
            self._call(self._client.submit_job, entrypoint=entrypoint, submission_id=sid,
                       runtime_env={"env_vars": env}, entrypoint_num_cpus=0)

    def status(self, sid: str, missing: Optional[str] = "FAILED") -> Optional[str]:
        """The Ray job's status (PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED); `missing` when there is no such job."""
        try:
            return str(self._client.get_job_status(sid))
        except RuntimeError as error:
            if "does not exist" in str(error) or "404" in str(error):
                return missing
            raise NeuronExportError(f"the Ray cluster at {self.address}: {str(error).splitlines()[0][:240]}") from None
        except (ConnectionError, ValueError, OSError) as error:
            raise NeuronExportError(f"the Ray cluster at {self.address}: {str(error).splitlines()[0][:240]}") from None

    def outcome(self, sid: str) -> tuple[Optional[int], str]:
        """A finished Ray job's driver exit code (None: its command never ran) and Ray's message about it."""
        info = self._call(self._client.get_job_info, sid)
        return getattr(info, "driver_exit_code", None), info.message or ""

    def logs(self, sid: str) -> str:
        return self._call(self._client.get_job_logs, sid)

    def stop(self, sid: str) -> None:
        """Stop the Ray job: Ray sends its driver SIGTERM (the CLI cancels its tasks and removes its staging), then SIGKILL."""
        self._call(self._client.stop_job, sid)

    def tasks(self, sid: str) -> list[TaskRow]:
        """The Ray tasks of the Ray job `sid` (the components and buckets of its export), oldest first."""
        from ray.util.state import list_nodes, list_tasks

        ray_job = self._call(self._client.get_job_info, sid).job_id
        if not ray_job:
            return []  # its driver has not started yet
        tasks = self._call(list_tasks, address=self.address, filters=[("job_id", "=", ray_job)], limit=1000,
                           raise_on_missing_output=False)
        nodes = {n.node_id: n.node_ip for n in self._call(list_nodes, address=self.address, raise_on_missing_output=False)}
        return [TaskRow(t.name.removeprefix("neuron_export:"), t.state, nodes.get(t.node_id) or (t.node_id or "")[:12],
                        t.attempt_number) for t in tasks if t.name.startswith("neuron_export:")]

    def describe(self) -> str:
        """One line: the cluster's live nodes and what they offer."""
        from ray.util.state import list_nodes

        alive = [n for n in self._call(list_nodes, address=self.address, raise_on_missing_output=False) if n.state == "ALIVE"]
        parts = []
        for node in alive:
            total = node.resources_total
            offer = [f"{total.get('CPU', 0):g} CPU", f"{total.get('memory', 0) / 2**30:.1f} GiB"]
            if total.get("neuron_cores"):
                offer.append(f"{total['neuron_cores']:g} NeuronCores")
            parts.append(f"{node.node_ip} ({', '.join(offer)})")
        return f"{len(alive)} node(s) alive: {'; '.join(parts)}"


def _probe(address: str) -> None:
    host, port = address.split("://")[-1].rsplit(":", 1)
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        raise NeuronExportError(f"cannot reach the Ray cluster at {address}: {error.strerror or error}") from None


def job_env() -> dict[str, str]:
    """The environment a farm job's driver gets (on the head node): the settings of ours it needs,
    never the dashboard's password nor a token, and this checkout on its PYTHONPATH."""
    # Tokens (HF_TOKEN, ...) stay here: the runtime_env is readable through Ray's jobs API. The head node
    # needs its own Hugging Face login for gated models, or HF_TOKEN_PATH naming a token file on shared
    # storage (a *_PATH variable is a file's path, not the secret, so it is passed).
    env = {name: value for name, value in os.environ.items()
           if name.startswith(_PASSED_ENV) and name not in PRIVATE_ENV and name != RAY_ADDRESS_ENV
           and (not _SECRET.search(name) or name.endswith("_PATH"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [PROJECT_ROOT, os.environ.get("PYTHONPATH")]))
    return env


def task_rows(job: Job) -> list[TaskRow]:
    """The Ray tasks of a farm job (the Jobs page's table; tests replace this)."""
    farm = farm_of(job)
    return FarmClient(farm["address"]).tasks(farm["submission_id"]) if farm else []


def describe(address: str) -> str:
    """The System page's connection test: the nodes of the cluster at `address`, or a one-line NeuronExportError."""
    return FarmClient(address).describe()


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
UNREACHABLE_FOR_S = 60.0  # a cluster that does not answer this long: the follower gives up (the Ray job may run on)
_POLL_S = 1.0


class LostContact(NeuronExportError):
    """The follower of a submitted Ray job cannot reach its cluster: the job is interrupted, not failed."""


def may_still_run(sid: str) -> str:
    return f"may still be running (stop it with: ray job stop {sid})"


class RayJobProcess:
    """A farm job's Ray job, followed as the worker follows a local child process: poll() is None
    while it runs, then its driver's exit code (STOPPED: 130, as an interrupted CLI). Polling
    copies the Ray job's new log lines into the job's log and stops the Ray job once `sigterm` is
    set (Cancel, or the cancel flag seen by the worker). A submitted Ray job whose cluster does not
    answer for UNREACHABLE_FOR_S (the first connection included) raises LostContact."""

    stop_grace_s = 60.0  # Ray SIGTERMs the driver, which cancels its tasks and removes its staging, then SIGKILLs it

    def __init__(self, store: JobStore, job: Job, sigterm, entrypoint: list[str]):
        import shlex

        farm = farm_of(job)
        self.store, self.job_id, self.sigterm = store, job.id, sigterm
        self.sid, self.copied = farm["submission_id"], int(farm.get("log_copied", 0))
        self.address = farm["address"]
        self.client: Optional[FarmClient] = None  # a submitted job's: connected by poll(), within its budget
        self._stopping = False
        self._next_poll = 0.0
        self._failing_since: Optional[float] = None
        self.killed_note = f"; Ray job {self.sid} {may_still_run(self.sid)}"  # the worker's message when it gives up
        if farm["submitted"]:
            print(f"[studio] following Ray job {self.sid} on the Ray cluster at {self.address} again", flush=True)
        else:  # nothing runs yet: a cluster that does not answer fails the job at once
            self.client = FarmClient(self.address)
            self.client.submit(self.sid, shlex.join(entrypoint), job_env())
            store.update(job.id, metadata={**job.metadata, FARM: {**farm, "submitted": True}})
            print(f"[studio] submitted to the Ray cluster at {self.client.address} as Ray job {self.sid}", flush=True)

    def poll(self) -> Optional[int]:
        import time

        if time.monotonic() < self._next_poll:
            return None
        self._next_poll = time.monotonic() + _POLL_S
        try:
            self.client = self.client or FarmClient(self.address)
            status = self.client.status(self.sid)
            self._copy_logs()
            if self.sigterm.is_set() and not self._stopping and status not in TERMINAL:
                print(f"[studio] stopping Ray job {self.sid}", flush=True)
                self.client.stop(self.sid)
                self._stopping = True  # only now: a stop that failed is tried again on the next poll
            code = self._exit_code(status) if status in TERMINAL else None
        except NeuronExportError as error:
            self._failing_since = self._failing_since or time.monotonic()
            if time.monotonic() - self._failing_since > UNREACHABLE_FOR_S:
                print(f"[studio] {error}", flush=True)
                raise LostContact(f"lost contact with Ray job {self.sid}; it {may_still_run(self.sid)}") from None
            print(f"[studio] {error}; trying again", flush=True)
            return None
        self._failing_since = None
        return code

    def _exit_code(self, status: str) -> int:
        if status == "SUCCEEDED":
            return 0
        if status == "STOPPED":
            return 130
        code, message = self.client.outcome(self.sid)
        if code is None:  # it never ran its command (e.g. its runtime environment failed): Ray's reason
            print(f"[studio] Ray job {self.sid} failed: {message}", flush=True)
        return code if code not in (None, 0) else 1

    def _copy_logs(self) -> None:
        logs = self.client.logs(self.sid)
        if len(logs) <= self.copied:
            return
        print(_ANSI.sub("", logs[self.copied:]), end="", flush=True)
        self.copied = len(logs)
        job = self.store.get(self.job_id)  # recorded, so a worker following it again after a restart does not repeat it
        self.store.update(self.job_id, metadata={**job.metadata, FARM: {**farm_of(job), "log_copied": self.copied}})
