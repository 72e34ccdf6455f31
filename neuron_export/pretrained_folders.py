"""The folder side of `from_pretrained` / `save_pretrained`: an artifact folder checked as one, a
model compiled into a temporary folder (export=True), and an artifact copied whole into another."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Union

from .artifact import check_output_dir, publish, staging
from .errors import ArtifactError, ValidationFailedError
from .optimum_neuron import is_optimum_folder
from .options import ExportOptions


def artifact_path(path: Union[str, Path]) -> Path:
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ArtifactError(f"{path} is not a compiled artifact folder; to compile a model, pass export=True")
    if not (folder / "manifest.json").is_file() and (folder / "config.json").is_file() and not is_optimum_folder(folder):
        raise ArtifactError(f"{path} is a model folder, not a compiled artifact; pass export=True to compile it")
    return folder


def export_to_temporary(model: Union[str, Path], options: ExportOptions) -> tuple[Path, Path]:
    """Compile `model` into a temporary folder: (the artifact, the folder to delete with the model
    object that uses it). ValidationFailedError when it differs from eager PyTorch beyond atol."""
    from .export import export

    temporary = Path(tempfile.mkdtemp(prefix="neuron_export_model_"))
    try:
        result = export(model, temporary / "artifact", options)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    if result.validation_passed is False:
        failed = [o.name for r in result.reports for o in r.outputs if not o.passed] or ["output names"]
        raise ValidationFailedError(
            f"the compiled model's {', '.join(failed)} differ from eager PyTorch beyond atol; artifact and report kept in {result.artifact}"
        )
    return result.artifact, temporary


def copy_artifact(path: Path, save_directory: Union[str, Path]) -> Path:
    """Copy an artifact folder into `save_directory` (an artifact already there is replaced; another
    non-empty folder is refused)."""
    target = Path(save_directory).expanduser().resolve()
    if target == path.resolve():
        return target
    check_output_dir(target, force=True)
    with staging(target) as folder:
        shutil.copytree(path, folder, dirs_exist_ok=True)
        publish(folder, target, replace=True)
    return target
