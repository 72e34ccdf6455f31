"""Text generation through the other ways in: the CLI, the benchmark, and the neuron backend's
handling of the KV cache as device state (input_output_aliases), on a CPU simulation of the
documented torch_neuronx.trace semantics (the real SDK is not installable here)."""

from __future__ import annotations

import json
import sys
import types

import pytest
import torch
import transformers

from neuron_export import ExportOptions, NeuronModelForCausalLM, export
from neuron_export.backends.neuron import NeuronBackend, StateAsParameters
from neuron_export.benchmark import BenchmarkOptions, benchmark, format_report, headline
from neuron_export.demo import resolve_demo
from support import run_cli

LENGTH = 32


def test_cli_exports_text_generation_and_refuses_a_missing_length(tmp_path):
    length = LENGTH + 8  # a shape no other test compiles: the first export is not a compile cache hit
    done = run_cli("export", "-m", "demo:tiny-llama", "--task", "text-generation", "--batch_size", "1", "--sequence_length", str(length),
                   "--backend", "torchscript", str(tmp_path / "llama"))
    assert done.returncode == 0, done.stderr
    assert "Validating compiled model output \"greedy tokens\"" in done.stdout + done.stderr
    manifest = json.loads((tmp_path / "llama" / "manifest.json").read_text())
    assert manifest["components"] == [f"prefill_{length}", "decode"] and manifest["pipeline_class"] == "NeuronModelForCausalLM"
    assert manifest["validation"]["passed"] is True
    again = run_cli("export", "-m", "demo:tiny-llama", "--sequence_length", str(length), "--backend", "torchscript", str(tmp_path / "hit"))
    assert again.returncode == 0 and "Compile cache hit" in again.stdout + again.stderr
    inputs = {"input_ids": torch.tensor([[5, 6, 7]]), "max_new_tokens": 4}
    first, hit = (NeuronModelForCausalLM.from_pretrained(tmp_path / name) for name in ("llama", "hit"))
    assert hit.generate(**inputs).tolist() == first.generate(**inputs).tolist()
    refused = run_cli("export", "-m", "demo:tiny-llama", "--backend", "torchscript", str(tmp_path / "other"))
    assert refused.returncode == 2 and refused.stderr.strip().count("\n") == 0
    assert "missing --sequence_length" in refused.stderr and not (tmp_path / "other").exists()
    assert run_cli("tasks", "gemma").stdout.split() == ["text-generation"]


def test_benchmark_of_a_generative_artifact(tmp_path):
    export("demo:tiny-llama", tmp_path / "llama", ExportOptions(backend="torchscript", sequence_length=LENGTH, disable_validation=True))
    report = benchmark(tmp_path / "llama", BenchmarkOptions(iterations=2, rounds=1, warmup=0, threads=1, new_tokens=5))
    run = report["runs"][0]
    assert report["kind"] == "generation" and set(run["sides"]) == {"compiled", "eager", "eager-static"}
    for name, side in run["sides"].items():
        assert side["status"] == "ok", side["detail"]
        assert side["new_tokens"] == 2 * 5 and side["time_to_first_token"]["count"] == 2 and side["stats"]["count"] == 2 * 4
        if name != "eager":
            assert side["max_abs_diff"] == {"tokens": 0.0}, "same greedy tokens as transformers"
    assert run["same_inputs"] and set(run["speedups"]) == {"compiled_vs_eager", "compiled_vs_eager-static"}
    text = "\n".join(format_report(report))
    assert "first token ms" in text and "eager (static cache)" in text and "tokens/s" in headline(report)
    with pytest.raises(Exception, match="--prompt_length 40: the artifact's prompt graph takes at most 32 tokens"):
        benchmark(tmp_path / "llama", BenchmarkOptions(iterations=1, prompt_length=40, save=False))


class SimulatedNeuronModule(torch.nn.Module):
    """What torch_neuronx.trace returns, simulated on CPU: the aliased tensors are the module's only
    parameters (the weights live in the NEFF), every output comes back, and an aliased output's
    value is the parameter's new value (here the graph updates the parameter in place)."""

    def __init__(self, func: torch.nn.Module, aliases: dict):
        super().__init__()
        self.states = torch.nn.ParameterList(list(aliases))
        object.__setattr__(self, "func", func)  # not a submodule: its weights are constants, as in a NEFF

    def forward(self, *inputs):
        return self.func(*inputs)


@pytest.fixture
def simulated_torch_neuronx(monkeypatch):
    calls = []

    def trace(func, example_inputs, *_, input_output_aliases={}, compiler_workdir=None, compiler_args=None,
              partitioner_config=None, inline_weights_to_neff=True, cpu_backend=False):
        """The documented signature; checks what the docs require of input_output_aliases."""
        parameters = list(func.parameters())
        assert all(any(key is p for p in parameters) for key in input_output_aliases), "alias keys are the module's parameters"
        with torch.no_grad():
            outputs = func(*example_inputs)
        assert all(outputs[index].shape == key.shape for key, index in input_output_aliases.items())
        calls.append({"aliases": list(input_output_aliases.values()), "example": [tuple(t.shape) for t in example_inputs]})
        for parameter in func.parameters():
            parameter.requires_grad_(False)
        with torch.no_grad():
            for key in input_output_aliases:
                key.zero_()  # the state starts as the traced initial values
            return torch.jit.trace(SimulatedNeuronModule(func, input_output_aliases), example_inputs, check_trace=False)

    module = types.ModuleType("torch_neuronx")
    module.trace = trace
    module.dynamic_batch = lambda compiled: compiled
    module.experimental = types.SimpleNamespace(set_neuron_cores=lambda module, start_nc, nc_count: None)  # one core
    monkeypatch.setitem(sys.modules, "torch_neuronx", module)
    monkeypatch.setattr(NeuronBackend, "unavailable_reason", lambda self, options: None)
    monkeypatch.setattr(NeuronBackend, "runtime_problem", lambda self, manifest: None)
    return calls


def test_neuron_backend_keeps_the_kv_cache_as_aliased_state(simulated_torch_neuronx, tmp_path):
    folder = resolve_demo("demo:tiny-llama")
    neuron = NeuronModelForCausalLM.from_pretrained(folder, export=True, backend="neuron", sequence_length=LENGTH)
    prefill, decode = simulated_torch_neuronx
    assert prefill["aliases"] == [] and len(prefill["example"]) == 2
    layers = transformers.AutoConfig.from_pretrained(folder).num_hidden_layers
    assert decode["aliases"] == list(range(2 * layers)), "each cache is returned first, at its own index"
    assert decode["example"] == [(1, 1), (1, 1)], "the caches are not inputs: they stay on the device"
    assert neuron.manifest.validation.passed is True
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    for prompt in ("the quick brown fox", "hello"):
        inputs = tokenizer(prompt, return_tensors="pt")
        assert neuron.generate(**inputs, max_new_tokens=8).tolist() == model.generate(**inputs, max_new_tokens=8).tolist()


def test_state_as_parameters_returns_the_state_first():
    class Step(torch.nn.Module):
        def forward(self, x, cache):
            cache.add_(x)
            return (cache.sum().reshape(1),)

    wrapped = StateAsParameters(Step(), [torch.zeros(3)])
    aliases = wrapped.aliases()
    assert list(aliases.values()) == [0] and next(iter(aliases)) is wrapped.state[0]
    state, total = wrapped(torch.ones(3))
    assert state is wrapped.state[0] and total.item() == 3.0 and wrapped.state[0].tolist() == [1.0, 1.0, 1.0]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_text_generation_on_cuda(tmp_path):
    """The graphs and their KV-cache state on the GPU (inductor), tokens equal to transformers' on the CPU."""
    neuron = NeuronModelForCausalLM.from_pretrained("demo:tiny-llama", export=True, backend="inductor", device="cuda",
                                                    sequence_length=LENGTH)
    assert neuron.manifest.device == "cuda" and neuron.manifest.validation.passed is True
    folder = resolve_demo("demo:tiny-llama")
    inputs = transformers.AutoTokenizer.from_pretrained(folder)("the quick brown fox", return_tensors="pt")
    want = transformers.AutoModelForCausalLM.from_pretrained(folder).eval().generate(**inputs, max_new_tokens=8)
    assert neuron.generate(**inputs, max_new_tokens=8).tolist() == want.tolist()
