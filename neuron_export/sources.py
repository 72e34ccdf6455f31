"""Where a model comes from (hub id, local folder, built-in demo) and loading it eagerly."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from .errors import NeuronExportError, first_line
from .options import ExportOptions
from .registry import DIFFUSERS_PIPELINES, auto_class, get_architecture

HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")
# Files worth downloading from a hub repo: configs, tokenizers, weights; never other formats.
HUB_PATTERNS = ["*.json", "*.txt", "*.model", "*.safetensors", "pytorch_model.bin", "*/*.json", "*/*.txt", "*/*.safetensors"]


@dataclass
class ModelSource:
    origin: str  # what the user named: hub id, folder or demo name
    path: Path  # local folder holding the model
    library: str  # "transformers" | "sentence_transformers" | "diffusers"
    config: dict[str, Any]  # config.json (model_index.json for diffusers)

    @property
    def model_type(self) -> str:
        if self.library == "diffusers":
            return DIFFUSERS_PIPELINES.get(self.config.get("_class_name", ""), "unknown-diffusers-pipeline")
        return self.config.get("model_type", "")

    @property
    def encoder_path(self) -> Path:
        """Folder of the transformers model (a sentence-transformers folder may nest it)."""
        if self.library == "sentence_transformers":
            return self.path / sentence_transformers_modules(self.path)[0].get("path", "")
        return self.path


def resolve_model_source(model: str | Path, options: ExportOptions, demo_root: Optional[Path] = None) -> ModelSource:
    name = str(model).strip()
    if not name:
        raise NeuronExportError("--model is empty: give a hub id, a local folder or a demo:NAME model")
    if name.startswith("demo:"):
        from .demo import resolve_demo

        return read_model_folder(name, resolve_demo(name, demo_root), options)
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise NeuronExportError(f"{name} is a file; --model takes a model folder or a hub id")
        return read_model_folder(name, path, options)
    if name.startswith((".", "/", "~")) or not HUB_ID.match(name):
        raise NeuronExportError(f"model folder {name} does not exist")
    return read_model_folder(name, _download(name, options), options)


def _download(repo_id: str, options: ExportOptions) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(snapshot_download(repo_id, cache_dir=options.cache_dir, allow_patterns=HUB_PATTERNS))
    except RepositoryNotFoundError:
        raise NeuronExportError(f"no model {repo_id!r} on the Hugging Face Hub (or it is private)") from None
    except (LocalEntryNotFoundError, OSError) as error:
        raise NeuronExportError(
            f"cannot download {repo_id!r} from the Hugging Face Hub (offline?): {first_line(error)}; "
            "download it where the Hub is reachable and pass the local folder"
        ) from None


def read_model_folder(origin: str, path: Path, options: ExportOptions) -> ModelSource:
    """The model in a local folder (transformers, sentence-transformers or diffusers), from its configs."""
    if (path / "model_index.json").is_file():
        return ModelSource(origin, path, "diffusers", _read_json(path / "model_index.json"))
    library = "sentence_transformers" if (path / "modules.json").is_file() else "transformers"
    source = ModelSource(origin, path, library, {})
    config_file = source.encoder_path / "config.json"
    if not config_file.is_file():
        raise NeuronExportError(f"{path} has no config.json: not a transformers, sentence-transformers or diffusers model folder")
    source.config = _read_json(config_file)
    model_type = source.config.get("model_type")
    if not model_type:
        raise NeuronExportError(f"{config_file} has no model_type")
    if "auto_map" in source.config and not options.trust_remote_code:
        raise NeuronExportError(
            f"{origin} ships its own model code (auto_map in config.json); "
            "rerun with --trust-remote-code only if you trust that code"
        )
    get_architecture(model_type)  # unsupported architecture: error listing the supported ones
    return source


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise NeuronExportError(f"cannot read {path}: {first_line(error)}") from None


def sentence_transformers_modules(path: Path) -> list[dict[str, Any]]:
    modules = _read_json(path / "modules.json")
    if not modules or not isinstance(modules, list):
        raise NeuronExportError(f"{path / 'modules.json'} lists no modules")
    return modules


def load_config(source: ModelSource, options: ExportOptions):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(
            source.encoder_path, local_files_only=True, trust_remote_code=options.trust_remote_code
        )
    except Exception as error:  # transformers raises many types for a bad config
        raise NeuronExportError(f"cannot load the config of {source.origin}: {first_line(error)}") from None


def load_eager_model(source: ModelSource, task: str, options: ExportOptions):
    """The transformers model for a task, in fp32 eval mode, from local safetensors (or weights_only pickles)."""
    import torch

    auto = auto_class(task, source.model_type)
    # The default attention (sdpa) returns no attention weights: --output_attentions needs eager.
    attention = {"attn_implementation": "eager"} if options.output_attentions else {}
    try:
        model = auto.from_pretrained(
            source.encoder_path,
            local_files_only=True,
            trust_remote_code=options.trust_remote_code,
            dtype=torch.float32,
            **attention,
        )
    except Exception as error:  # corrupt / truncated weights surface as many exception types
        raise NeuronExportError(f"cannot load the weights of {source.origin}: {first_line(error)}") from None
    return model.eval()
