"""The one place that turns what a page asks for into a job's command line.

Every job the studio submits runs the neuron_export CLI in a subprocess (the worker appends its
`--events` file), so a request made on the dashboard is exactly what `neuron-export` would run.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

if TYPE_CHECKING:
    from neuron_export.options import ExportOptions

EXPORT = "export"
BENCHMARK = "benchmark"
DOWNLOAD = "download"
CLI_KINDS = (EXPORT, BENCHMARK, DOWNLOAD)  # job kinds that run the neuron_export CLI and take its --events flag
RAY_ADDRESS_ENV = "NEURON_EXPORT_RAY_ADDRESS"  # neuron_export.farm.cluster.ADDRESS_ENV (not imported: no torch here)
PROJECT_ROOT = str(Path(__file__).resolve().parents[2])  # on a job's PYTHONPATH: it imports this checkout from any cwd


def cli_command(*args: str) -> list[str]:
    """`neuron-export ARGS` as this interpreter runs it (whatever is on the server's PATH)."""
    return [sys.executable, "-m", "neuron_export", *args]


def export_command(model: str, output: str | Path, options: ExportOptions) -> list[str]:
    """Compile `model` (hub id, folder or demo:NAME) into `output` with these options (on the farm,
    when one is set, the dispatcher runs it as a Ray job: studio/jobs/farm.py)."""
    # Imported here: the worker imports this module for CLI_KINDS and must start without torch.
    from neuron_export.cli import export_argv

    return cli_command(*export_argv(model, output, options))


def benchmark_command(artifact: str | Path, iterations: int, warmup: int, steps: int, batch_sizes: Sequence[int] = (),
                      onnx: bool = True, threads: Optional[int] = None, trust_remote_code: bool = False,
                      pipeline: Optional[str] = None) -> list[str]:
    """Time `artifact` against eager PyTorch (and ONNX Runtime unless onnx=False); no batch sizes:
    the compiled one; steps: denoising steps per image of a pipeline; threads: all cores unless given;
    trust_remote_code: the person at the dashboard agreed to run the source model's own code; pipeline: the class
    of a Stable Diffusion artifact to time (None: the class the artifact's source was saved as (an SDXL refiner:
    img2img), else the task's first)."""
    args = ["benchmark", str(artifact), "--iterations", str(iterations), "--warmup", str(warmup), "--steps", str(steps)]
    if batch_sizes:
        args += ["--batch_size", *map(str, batch_sizes)]
    if not onnx:
        args.append("--no-onnx")
    if threads is not None:
        args += ["--threads", str(threads)]
    if trust_remote_code:
        args.append("--trust-remote-code")
    if pipeline:
        args += ["--pipeline", pipeline]
    return cli_command(*args)


def download_command(repo_id: str, output: str | Path, force: bool = False) -> list[str]:
    """Download the precompiled Neuron model `repo_id` from the Hugging Face Hub into `output`."""
    return cli_command("download", repo_id, str(output), *(["--force"] if force else []))
