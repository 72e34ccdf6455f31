"""Helpers shared by test modules of every folder (a module, not a conftest: conftest names clash)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd=None, timeout: int = 600):
    """Run the real `neuron-export` command in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "neuron_export", *args],
        capture_output=True, text=True, timeout=timeout, cwd=cwd or ROOT, env={**os.environ, "PYTHONPATH": python_path()},
    )


def python_path() -> str:
    """PYTHONPATH for a subprocess: this checkout first, then what this process was given (an installed SDK)."""
    return os.pathsep.join([str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])
