"""Where a model comes from (hub id, local folder, built-in demo) and loading it eagerly."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from .errors import NeuronExportError, first_line
from .model_files import check_links, read_json
from .options import ExportOptions
from .processors import open_preprocessor
from .registry import ARCHITECTURES, auto_class, detect_task, diffusers_task, get_architecture

HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")
# Files worth downloading from a hub repo: configs, tokenizers, weights; never other formats.
# Files of a tokenizer or image processor: a folder that ships any of them must load them.
PREPROCESSOR_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "merges.txt", "spiece.model",
                      "sentencepiece.bpe.model", "special_tokens_map.json", "preprocessor_config.json")
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
            # by the pipeline class and the UNet (a StableDiffusionPipeline with a 9-channel UNet inpaints)
            task = diffusers_task(self.config.get("_class_name", ""), unet_in_channels(self.path / "unet"))
            return task or "unknown-diffusers-pipeline"
        return self.config.get("model_type", "")

    @property
    def encoder_path(self) -> Path:
        """Folder of the transformers model (a sentence-transformers folder may nest it)."""
        if self.library == "sentence_transformers":
            return self.path / sentence_transformers_modules(self.path)[0].get("path", "")
        return self.path


def unet_in_channels(folder: Path) -> Optional[int]:
    """A diffusers UNet folder's in_channels; None when it has no readable config (the export says what is wrong)."""
    try:
        value = read_json(folder / "config.json").get("in_channels")
    except NeuronExportError:
        return None
    return value if isinstance(value, int) else None


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
        check_links(path)
        return ModelSource(origin, path, "diffusers", read_json(path / "model_index.json"))
    library = "sentence_transformers" if (path / "modules.json").is_file() else "transformers"
    source = ModelSource(origin, path, library, {})
    config_file = source.encoder_path / "config.json"
    if not config_file.is_file():
        raise NeuronExportError(f"{path} has no config.json: not a transformers, sentence-transformers or diffusers model folder")
    check_links(path)
    source.config = read_json(config_file)
    model_type = source.config.get("model_type")
    if not model_type or not isinstance(model_type, str):
        raise NeuronExportError(f"{config_file} has no model_type")
    architectures = source.config.get("architectures")
    if architectures is not None and not (isinstance(architectures, list) and all(isinstance(a, str) for a in architectures)):
        raise NeuronExportError(f"{config_file}: architectures must be a list of class names, got {architectures!r}")
    if "auto_map" in source.config and not options.trust_remote_code:
        raise NeuronExportError(
            f"{origin} ships its own model code (auto_map in config.json); "
            "rerun with --trust-remote-code only if you trust that code"
        )
    get_architecture(model_type)  # unsupported architecture: error listing the supported ones
    return source


def sentence_transformers_modules(path: Path) -> list[dict[str, Any]]:
    modules = read_json(path / "modules.json", list)
    if not modules or not all(isinstance(module, dict) for module in modules):
        raise NeuronExportError(f"{path / 'modules.json'} lists no modules")
    return modules


def read_preprocessor_config(folder: Path) -> dict[str, Any]:
    """A model folder's image processor / feature extractor config, {} when it has none: its
    preprocessor_config.json, or the part of processor_config.json (transformers 5 saves a processor
    such as CLIPProcessor there) that holds it."""
    folder = Path(folder)
    if (folder / "preprocessor_config.json").is_file():
        return read_json(folder / "preprocessor_config.json")
    if (folder / "processor_config.json").is_file():
        combined = read_json(folder / "processor_config.json")
        part = combined.get("image_processor") or combined.get("feature_extractor") or {}
        if not isinstance(part, dict):
            raise NeuronExportError(f"{folder / 'processor_config.json'}: its image processor / feature extractor must be a JSON object")
        return part
    return {}


def load_config(source: ModelSource, options: ExportOptions):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(
            source.encoder_path, local_files_only=True, trust_remote_code=options.trust_remote_code
        )
    except Exception as error:  # transformers raises many types for a bad config
        raise NeuronExportError(f"cannot load the config of {source.origin}: {first_line(error)}") from None


def check_preprocessor(source: ModelSource, processor_class: str) -> None:
    """Load the folder's tokenizer / image processor (what the artifact's users will load) when it
    ships one: a corrupt one is refused here rather than copied into the artifact."""
    folder = source.encoder_path if source.library == "transformers" else source.path
    if not any((folder / name).is_file() for name in PREPROCESSOR_FILES):
        return
    try:
        open_preprocessor(folder, processor_class, local_files_only=True, trust_remote_code=False)
    except Exception as error:  # tokenizers / PIL / json raise many types for broken files
        raise NeuronExportError(f"the tokenizer or preprocessor files of {source.origin} cannot be loaded: {first_line(error)}") from None


def load_eager_model(source: ModelSource, task: str, options: ExportOptions):
    """The transformers model for a task, in fp32 eval mode, from local safetensors (or weights_only
    pickles), and the weights the checkpoint does not provide for this task (see load_weights)."""
    import torch

    # The default attention (sdpa) returns no attention weights: --output_attentions needs eager.
    attention = {"attn_implementation": "eager"} if options.output_attentions else {}
    model, untrained = load_weights(auto_class(task, source.model_type), source.encoder_path, source.origin,
                                    trust_remote_code=options.trust_remote_code, dtype=torch.float32, **attention)
    return model, untrained + head_of_another_task(model, source, task, untrained)


def load_weights(model_class, folder: Path, origin: str, **keywords) -> tuple[Any, list[str]]:
    """`model_class.from_pretrained(folder)` with transformers' / diffusers' loading report. Weights
    of the model's body that the checkpoint lacks are an error (they would be random, and validation
    would compare a random model with itself); returns the model (eval mode) and the head weights
    it lacks (randomly initialized: the caller warns)."""
    try:
        model, info = model_class.from_pretrained(folder, local_files_only=True, output_loading_info=True, **keywords)
    except Exception as error:  # corrupt / truncated weights surface as many exception types
        raise NeuronExportError(f"cannot load the weights of {origin}: {first_line(error)}") from None
    missing = sorted(info.get("missing_keys") or [])
    body = [key for key in missing if not is_head_weight(model, key)]
    if body:
        shown = ", ".join(body[:3]) + (f" and {len(body) - 3} more" if len(body) > 3 else "")
        raise NeuronExportError(
            f"{origin} lacks {len(body)} weights of the model itself ({shown}): the checkpoint is incomplete "
            "or of another model, and they would be random"
        )
    return model.eval(), [key for key in missing if is_head_weight(model, key)]


def is_head_weight(model, name: str) -> bool:
    """Whether a weight belongs to the task's head (or the pooler) rather than the model's body."""
    if "pooler" in name.split("."):
        return True
    prefix = getattr(model, "base_model_prefix", "")
    if getattr(model, "base_model", model) is model:
        # A body without a head (AutoModel, a diffusers model), or a head without a body prefix (CLIP's).
        arch = ARCHITECTURES.get(getattr(getattr(model, "config", None), "model_type", None))
        return arch is not None and name.split(".")[0] in arch.unprefixed_heads
    return not name.startswith(f"{prefix}.")


def head_of_another_task(model, source: ModelSource, task: str, missing: list[str]) -> list[str]:
    """The head weights that were loaded but trained for another task (a text classifier's head
    reused per token): as meaningless as missing ones."""
    try:
        trained_for = detect_task(source.model_type, source.config.get("architectures"))
    except NeuronExportError:  # a class name that names no task: nothing to compare
        return []
    if trained_for == task:
        return []
    return [name for name, _ in model.named_parameters() if is_head_weight(model, name) and name not in missing
            and "pooler" not in name.split(".")]


def untrained_warning(origin: str, task: str, names: list[str]) -> str:
    """The warning for weights a checkpoint does not provide for the task (load_eager_model)."""
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    return (f"{origin} has no trained {task} head: {shown} are randomly initialized or come from another task's head, "
            "so its outputs are meaningless until it is fine-tuned (the compiled model still matches eager PyTorch)")
