"""The one folder that holds everything the studio writes."""

import os
import re
from pathlib import Path

from neuron_export.artifact import MANIFEST
from neuron_export.errors import NeuronExportError
from neuron_export.optimum_neuron import is_optimum_folder
from studio.environment import MODEL_ROOTS_ENV

WORKSPACE_ENV = "NEURON_EXPORT_WORKSPACE"
MAX_NAME_LENGTH = 100
_DISALLOWED_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]")


class Workspace:
    """Folder layout: artifacts/, jobs/ (a folder per job: log + events), demo/, cache/ and jobs.db.

    The root is `root`, else $NEURON_EXPORT_WORKSPACE, else ~/neuron_export_workspace; folders are created on use.
    """

    def __init__(self, root: str | os.PathLike | None = None):
        root = root or os.environ.get(WORKSPACE_ENV) or Path.home() / "neuron_export_workspace"
        self.root = Path(root).expanduser().resolve()
        self.artifacts_dir = self.root / "artifacts"
        self.jobs_dir = self.root / "jobs"
        self.demo_dir = self.root / "demo"
        self.cache_dir = self.root / "cache"
        self.db_path = self.root / "jobs.db"
        for folder in (self.artifacts_dir, self.jobs_dir, self.demo_dir, self.cache_dir):
            folder.mkdir(parents=True, exist_ok=True)

    def artifact_path(self, name: str) -> Path:
        """The folder under artifacts/ for a user-entered output name; NeuronExportError if the name is unsafe."""
        problem = _name_problem(name)
        if problem:
            raise NeuronExportError(f"Invalid output name {name!r}: {problem}.")
        return self.artifacts_dir / name

    def model_roots(self) -> list[Path]:
        """The folders a model folder typed on the dashboard may be in: the workspace, and those
        in $NEURON_EXPORT_MODEL_ROOTS (os.pathsep-separated)."""
        extra = [Path(p).expanduser().resolve() for p in os.environ.get(MODEL_ROOTS_ENV, "").split(os.pathsep) if p.strip()]
        return [self.root, *extra]

    def model_folder(self, typed: str) -> Path:
        """The model folder a person typed, if it is a folder inside a model root. Whether it is
        missing, a file or outside the roots gets the same answer: the dashboard is no way to learn
        what exists on the host."""
        roots = self.model_roots()
        path = Path(typed.strip()).expanduser()
        if path.is_absolute():
            resolved = path.resolve()
            if resolved.is_dir() and any(resolved.is_relative_to(root) for root in roots):
                return resolved
        raise NeuronExportError(
            f"No model folder {typed.strip()!r} that this dashboard may read. Give the full path of a folder under "
            f"{', '.join(str(root) for root in roots)} ({MODEL_ROOTS_ENV} adds folders)."
        )

    def list_artifacts(self) -> list[Path]:
        """Folders under artifacts/ that hold a manifest.json, or that optimum-neuron compiled, sorted by name."""
        return sorted(folder for folder in self.artifacts_dir.iterdir()
                      if (folder / MANIFEST).is_file() or (folder.is_dir() and is_optimum_folder(folder)))


def _name_problem(name: str) -> str | None:
    if not name:
        return "enter a folder name such as bert_neuron"
    if len(name) > MAX_NAME_LENGTH:
        return f"use at most {MAX_NAME_LENGTH} characters"
    if "/" in name or "\\" in name or os.path.isabs(name):
        return "use a plain folder name, not a path"
    if ".." in name:
        return "'..' is not allowed"
    if name.startswith("."):
        return "it must not start with '.'"
    disallowed = sorted(set(_DISALLOWED_NAME_CHARS.findall(name)))
    if disallowed:
        return f"only letters, digits, '.', '_' and '-' are allowed (found {''.join(disallowed)!r})"
    return None
