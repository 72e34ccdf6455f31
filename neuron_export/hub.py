"""Precompiled Neuron models on the Hugging Face Hub (folders optimum-neuron wrote), downloaded on request.

Nothing else in this tool downloads a compiled model: `neuron-export download REPO OUTPUT` (or the
Playground's hub field, which runs it as a job) fetches the repository's files into a staging folder,
checks that they are an optimum-neuron artifact, and publishes the folder in one rename.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Optional

from .artifact import check_output_dir, publish, staging
from .errors import NeuronExportError, first_line
from .hub_reach import hub_offline
from .optimum_neuron import read_optimum_manifest
from .sources import HUB_ID

log = logging.getLogger("neuron_export")
# Uncompiled weights a precompiled repository may also carry; the compiled model does not need them.
SKIPPED = ["*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.onnx", "*.h5", "*.msgpack", "*.gguf"]


def download_problem(repo_id: str) -> Optional[str]:
    """Why `repo_id` cannot be downloaded from here, known before trying (None: try)."""
    if not HUB_ID.match(repo_id) or "/" not in repo_id:
        return f"{repo_id!r} is not a Hugging Face Hub id (owner/name)"
    if hub_offline():
        return (f"cannot download {repo_id}: this host is offline for the Hugging Face Hub (HF_HUB_OFFLINE is set); "
                "download the folder where the Hub is reachable and copy it into the workspace's artifacts/")
    return None


def download_precompiled(repo_id: str, output: str | Path, force: bool = False, revision: Optional[str] = None) -> Path:
    """Download the precompiled Neuron model `repo_id` into the artifact folder `output`."""
    problem = download_problem(repo_id)
    if problem:
        raise NeuronExportError(problem)
    output = Path(output).expanduser().resolve()
    check_output_dir(output, force)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    with staging(output) as folder:
        log.info("Downloading %s from the Hugging Face Hub", repo_id)
        try:
            snapshot_download(repo_id, revision=revision, local_dir=folder, ignore_patterns=SKIPPED)
        except (RepositoryNotFoundError, RevisionNotFoundError):
            raise NeuronExportError(f"no model {repo_id!r}{f' at revision {revision}' if revision else ''} on the Hugging Face Hub "
                                    "(or it is private)") from None
        except Exception as error:  # network errors come in many types
            raise NeuronExportError(f"cannot download {repo_id} from the Hugging Face Hub: {first_line(error)}") from None
        shutil.rmtree(folder / ".cache", ignore_errors=True)  # huggingface_hub's bookkeeping of local_dir downloads
        manifest = read_optimum_manifest(folder)
        if manifest is None:
            raise NeuronExportError(f"{repo_id} is not a precompiled Neuron model: it has neither a model.neuron with a `neuron` "
                                    "section in config.json nor model_index.json with compiled components")
        check_output_dir(output, force)
        publish(folder, output, replace=True)
    log.info("Downloaded %s (%s, %s) to %s", repo_id, manifest.task, manifest.runs_on, output)
    return output
