"""Fixtures of the neuron tests: the stand-in Neuron SDK installed in a folder, for subprocesses or this process."""

import importlib
import os
import sys

import pytest
from standin_sdk import install_sdk

STANDIN_MODULES = ("torch_neuronx", "neuronxcc")


@pytest.fixture(scope="session")
def standin(tmp_path_factory):
    """The stand-in torch-neuronx (built for the running torch) and neuronx-cc, with neuron-ls."""
    return install_sdk(tmp_path_factory.mktemp("neuron-sdk"))


@pytest.fixture
def sdk_variant(tmp_path):
    """Install a variant of the SDK (placeholder, another torch, broken, missing) into this test's folder."""
    count = iter(range(100))
    return lambda **variant: install_sdk(tmp_path / f"sdk-{next(count)}", **variant)


def forget_standin_modules() -> None:
    for name in [m for m in sys.modules if m.split(".")[0] in STANDIN_MODULES]:
        del sys.modules[name]
    importlib.invalidate_caches()


@pytest.fixture
def in_process(monkeypatch):
    """Make an installed SDK importable in this process for one test (and forget it afterwards)."""

    installed = []

    def install(sdk):
        forget_standin_modules()
        sys.path[:] = [p for p in sys.path if p not in installed]  # one SDK at a time
        installed.append(str(sdk.site))
        monkeypatch.syspath_prepend(str(sdk.site))
        monkeypatch.setenv("PATH", f"{sdk.bin}{os.pathsep}{os.environ['PATH']}")
        monkeypatch.delenv("NEURON_PLATFORM_TARGET_OVERRIDE", raising=False)
        return sdk

    yield install
    forget_standin_modules()
