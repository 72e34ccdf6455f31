"""Tests that run on an inf2 host: on this project's machines an emulated one, started by
tests/neuron/test_emulated_inf2.py in a private mount namespace whose /dev holds a Neuron device node,
with the stand-in Neuron SDK installed. Their files are named host_*.py so that the default suite
does not collect them itself; without a Neuron device they skip."""

import glob
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    if glob.glob("/dev/neuron*"):
        return
    skip = pytest.mark.skip(reason="needs a Neuron device: tests/neuron/test_emulated_inf2.py runs these on an emulated inf2 host")
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(skip)


@pytest.fixture
def runs():
    """The NEFF runs of this test so far (graph, NeuronCore, input shapes), from the stand-in runtime."""
    import torch_neuronx

    torch_neuronx.standin.clear_executions()
    return torch_neuronx.standin.executions
