"""Built-in demo models: tiny random-weight HF models built locally from the registry's configs,
plus a real MiniLM (catalog.py); their tokenizers (vocab.py) and builders (tiny.py).

Importing this package is cheap: the builders import torch / transformers / diffusers when they run.
"""

from .catalog import DEMO_DIR_ENV, DEMO_MODELS, MARKER_FILE, DemoModel, default_demo_root, minilm_path, resolve_demo
from .tiny import (
    build_tiny_model,
    build_tiny_stable_diffusion,
    build_tiny_text_model,
    build_tiny_vision_model,
    make_tiny_model,
    make_tiny_sd_pipeline,
)

__all__ = [
    "DEMO_MODELS", "DEMO_DIR_ENV", "MARKER_FILE", "DemoModel", "default_demo_root", "minilm_path", "resolve_demo",
    "build_tiny_model", "build_tiny_text_model", "build_tiny_vision_model", "build_tiny_stable_diffusion", "make_tiny_model",
    "make_tiny_sd_pipeline",
]
