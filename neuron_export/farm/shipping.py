"""Compiled buckets sent from the task that compiled them to the task that saves them together,
which may run on another node: nothing travels as a path on the compiling node's disk.

- A TorchScript module (the torchscript backend's, and torch-neuronx's traces, which are
  ScriptModules too) cannot be pickled: it travels as the bytes of torch.jit.save. Its buckets were
  traces of one module sharing its weights; loaded separately they hold copies, so the weights that
  are equal in every bucket are tied again before saving (the backends store tied weights once).
- AOTInductor's result is a list of the files it wrote (the compiled .so, its sources, weights on
  disk) and, with weights shared between buckets, in-memory Weights: the files travel as their bytes
  and are written again into a folder of the saving task; package_aoti keeps only their base names.
- Anything else is refused in one line: a new backend's result must be taught to travel here.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch

from ..errors import NeuronExportError

TORCHSCRIPT = "torchscript-bytes"
AOTI_FILES = "aoti-files"


def ship(compiled: Any) -> Any:
    """Backend.compile_bucket's result as something Ray can pickle and another node can use."""
    if isinstance(compiled, torch.jit.ScriptModule):
        buffer = io.BytesIO()
        torch.jit.save(compiled, buffer)
        return (TORCHSCRIPT, buffer.getvalue())
    if isinstance(compiled, list):  # AOTInductor: file paths on this node ("" for none) and in-memory Weights
        return (AOTI_FILES, [(os.path.basename(f), Path(f).read_bytes()) if isinstance(f, str) and f else f for f in compiled])
    raise NeuronExportError(f"a compiled bucket of type {type(compiled).__name__} cannot be sent between Ray tasks; "
                            "export with --executor local")


def unship(shipped: Any, folder: Path) -> Any:
    """What ship() sent, usable here; files are written into `folder` (kept until the buckets are saved)."""
    kind, content = shipped
    if kind == TORCHSCRIPT:
        return torch.jit.load(io.BytesIO(content))
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for entry in content:
        if isinstance(entry, tuple):
            name, data = entry
            (folder / name).write_bytes(data)
            files.append(str(folder / name))
        else:
            files.append(entry)
    return files


def unship_buckets(shipped: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Bucket name -> compiled (files under folder/NAME), with the weights of TorchScript buckets tied to the first bucket's."""
    compiled = {name: unship(value, folder / name) for name, value in shipped.items()}
    modules = [m for m in compiled.values() if isinstance(m, torch.jit.ScriptModule)]
    if len(modules) > 1:
        first = dict(modules[0].named_parameters())
        for module in modules[1:]:
            for name, parameter in module.named_parameters():
                shared = first.get(name)
                if shared is not None and shared.shape == parameter.shape and torch.equal(shared, parameter):
                    *path, leaf = name.split(".")
                    owner = module
                    for part in path:
                        owner = getattr(owner, part)
                    setattr(owner, leaf, shared)
    return compiled
