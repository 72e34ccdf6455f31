"""On an inf2 host the stand-in runtime is as strict as the Neuron runtime: the compiled shape only (or
dim 0 with dynamic batching), a copy per NeuronCore with DataParallel, only the cores this process
may use. Budget: < 10 s."""

import pytest
import torch
import torch_neuronx
from stateful_module import Accumulator


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(4, 3)

    def forward(self, x):
        return (self.linear(x).tanh(),)


@pytest.fixture
def model():
    eager = Tiny().eval()
    return eager, torch_neuronx.trace(eager, torch.randn(1, 4))


def test_the_compiled_shape_and_dtype_only(model):
    eager, compiled = model
    x = torch.randn(1, 4)
    torch.testing.assert_close(compiled(x)[0], eager(x)[0])
    for wrong in (torch.randn(2, 4), torch.randn(1, 5), torch.randn(1, 4, dtype=torch.float64)):
        with pytest.raises(RuntimeError, match="NRT: input 0 has"):
            compiled(wrong)


def test_dynamic_batch_takes_any_batch_and_nothing_else(model):
    eager, compiled = model
    torch_neuronx.dynamic_batch(compiled)
    x = torch.randn(3, 4)
    torch.testing.assert_close(compiled(x)[0], eager(x)[0])
    with pytest.raises(RuntimeError, match="compiled for"):
        compiled(torch.randn(3, 5))


def test_data_parallel_runs_a_copy_per_core(model, runs):
    eager, compiled = model
    parallel = torch_neuronx.DataParallel(compiled, [0, 1], set_dynamic_batching=False)
    x = torch.randn(2, 4)
    torch.testing.assert_close(parallel(x)[0], eager(x)[0])
    assert [(r["core"], r["shapes"]) for r in runs()] == [(0, [[1, 4]]), (1, [[1, 4]])]
    with pytest.raises(RuntimeError, match="compiled for"):  # 2 rows per core, compiled for 1, no dynamic batching
        parallel(torch.randn(4, 4))
    with pytest.raises(RuntimeError, match=r"NeuronCores \[2\] are not available"):  # an inf2.xlarge has two
        torch_neuronx.DataParallel(compiled, [0, 2])


def test_placement_and_the_visible_cores(model, runs, monkeypatch):
    _, compiled = model
    torch_neuronx.experimental.set_neuron_cores(compiled, start_nc=1, nc_count=1)
    compiled(torch.randn(1, 4))
    assert runs()[-1]["core"] == 1
    monkeypatch.setenv("NEURON_RT_VISIBLE_CORES", "0")
    with pytest.raises(RuntimeError, match="NeuronCore 1 is not available"):
        compiled(torch.randn(1, 4))


def test_aliased_outputs_update_the_state_in_place_across_calls_and_a_save(tmp_path):
    eager = Accumulator().eval()
    step = eager.linear(torch.ones(3)).detach()
    compiled = torch_neuronx.trace(eager, torch.ones(3), input_output_aliases={eager.total[0]: 1})
    state = next(compiled.parameters())
    for calls in (1, 2):
        torch.testing.assert_close(compiled(torch.ones(3))[1], calls * step)
    torch.testing.assert_close(state, 2 * step)
    torch.jit.save(compiled, str(tmp_path / "model.neuron"))
    loaded = torch.jit.load(str(tmp_path / "model.neuron"))
    torch.testing.assert_close(loaded(torch.ones(3))[1], 3 * step)  # the state was saved with the module
    next(loaded.parameters()).copy_(torch.zeros(3))  # the host sets the state as the AWS T5 tutorial does
    torch.testing.assert_close(loaded(torch.ones(3))[1], step)
    with pytest.raises(RuntimeError, match="NRT: input 1 has shape"):  # the state is checked like any input
        next(loaded.parameters()).data = torch.zeros(4)
        loaded(torch.ones(3))
