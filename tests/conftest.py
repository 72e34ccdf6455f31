"""Test-wide isolation: no hub access, throw-away Inductor cache and demo folder per session."""

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from support import ROOT

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="neuron-export-tests-"))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ["TRANSFORMERS_VERBOSITY"] = "error"
# Inductor's cache grows by hundreds of MB per compile: keep it in the session folder.
os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(_SESSION_DIR / "inductor")
os.environ["NEURON_EXPORT_DEMO_DIR"] = str(_SESSION_DIR / "demo")
os.environ["NEURON_EXPORT_CACHE"] = str(_SESSION_DIR / "compile-cache")
# Models with their own code (trust-remote-code tests) are copied here by transformers, not into ~/.cache.
os.environ["HF_MODULES_CACHE"] = str(_SESSION_DIR / "hf-modules")


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_SESSION_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def session_dir() -> Path:
    return _SESSION_DIR


@pytest.fixture(scope="session")
def ray_cluster():
    """(GCS address, temp dir) of one local Ray cluster on loopback for the session's `ray` tests
    (started once: it takes ~15 s on 2 cores), stopped at the end with no process left."""
    from support import local_ray_cluster

    with local_ray_cluster() as cluster:
        yield cluster


@pytest.fixture(autouse=True)
def _pytest_main_module_back():
    """Streamlit's AppTest leaves the app's script as sys.modules["__main__"], and a multiprocessing "spawn" child
    started later in this process (the benchmark's sides) then re-runs app.py before its own work: put it back."""
    main = sys.modules["__main__"]
    yield
    sys.modules["__main__"] = main
