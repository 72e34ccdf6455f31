"""The stand-in torch_neuronx / neuronx-cc is as strict as the documented ones (on this host, which has no
Neuron device): the documented signatures and nothing else, only the compiler's documented flags and
values, no running without a device, no loading a compiled model without torch_neuronx. The runtime's
shape checks and placement need a device: tests/neuron/inf2/host_standin.py. Budget: < 15 s.
"""

import inspect
import subprocess
import sys

import pytest
import torch
from stateful_module import Accumulator

DOCUMENTED = {  # awsdocs-neuron torch-neuronx inference API reference
    "trace": "(func, example_inputs, *_, input_output_aliases={}, compiler_workdir=None, compiler_args=None, "
             "partitioner_config=None, inline_weights_to_neff=True, cpu_backend=False)",
    "dynamic_batch": "(neuron_script)",
    "async_load": "(trace, enable_async_load=True)",
    "lazy_load": "(trace, enable_lazy_load=True)",
    "move_trace_to_device": "(trace, device_id)",
}


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 3)

    def forward(self, x):
        return (self.linear(x).relu(),)


@pytest.fixture
def torch_neuronx(standin, in_process):
    in_process(standin)
    import torch_neuronx

    return torch_neuronx


def cross_compile(torch_neuronx, *args, **keywords):
    return torch_neuronx.trace(Tiny().eval(), torch.randn(2, 4), cpu_backend=True, **keywords,
                               compiler_args=["--target", "inf2", *args])


def test_the_api_has_the_documented_signatures(torch_neuronx):
    assert {name: str(inspect.signature(getattr(torch_neuronx, name))) for name in DOCUMENTED} == DOCUMENTED
    assert str(inspect.signature(torch_neuronx.DataParallel.__init__)) == "(self, module, device_ids=None, dim=0, set_dynamic_batching=True)"
    assert str(inspect.signature(torch_neuronx.experimental.set_neuron_cores)) == "(trace, start_nc=-1, nc_count=-1)"
    with pytest.raises(TypeError, match="inline_weight_to_neff"):  # a misspelt keyword is not silently ignored
        cross_compile(torch_neuronx, inline_weight_to_neff=False)


@pytest.mark.parametrize("args", [
    ["--auto-cast", "matmul"],  # the compiler's spelling is matmult
    ["--auto-cast=matmul"],
    ["--model-type", "unet"],
    ["--auto-cast-type", "bf8"],
    ["--optlevel=4"],
    ["--enable-fast-loading"],  # no abbreviations
    ["--fast-math", "none"],  # neuron-cc (inf1) only
    ["--target", "inf1"],
])
def test_the_compiler_refuses_what_it_does_not_document(torch_neuronx, args, capfd):
    with pytest.raises(RuntimeError, match="neuronx-cc failed with 2"):
        cross_compile(torch_neuronx, *args)
    assert "error:" in capfd.readouterr().err  # the compiler's own usage error


def test_the_compiler_takes_what_it_documents(torch_neuronx, tmp_path):
    args = ["--model-type=unet-inference", "--auto-cast", "matmult", "--auto-cast-type", "fp16", "-O3",
            "--enable-fast-loading-neuron-binaries", "--verbose=INFO", "--logfile", str(tmp_path / "log.txt")]
    compiled = cross_compile(torch_neuronx, *args, compiler_workdir=str(tmp_path / "work"))
    assert compiled.__class__.__name__.endswith("ScriptModule") or isinstance(compiled, torch.jit.ScriptModule)
    assert "--auto-cast matmult" in (tmp_path / "work" / "command.txt").read_text()
    assert "Compiler status PASS" in (tmp_path / "log.txt").read_text()
    with pytest.raises(RuntimeError, match="failed with 70"):  # NCC_EARG001: LNC 2 is trn2 only
        cross_compile(torch_neuronx, "--logical-nc-config", "2")


def test_without_a_device_it_compiles_only_for_a_named_target(torch_neuronx):
    with pytest.raises(RuntimeError, match="no Neuron device.*cpu_backend=True"):
        torch_neuronx.trace(Tiny().eval(), torch.randn(2, 4))
    with pytest.raises(RuntimeError, match="NEURON_PLATFORM_TARGET_OVERRIDE"):
        torch_neuronx.trace(Tiny().eval(), torch.randn(2, 4), cpu_backend=True)
    compiled = cross_compile(torch_neuronx)
    with pytest.raises(RuntimeError, match="no Neuron device found"):
        compiled(torch.randn(2, 4))


def test_a_saved_model_loads_only_with_torch_neuronx(torch_neuronx, tmp_path):
    torch.jit.save(cross_compile(torch_neuronx), str(tmp_path / "model.neuron"))
    without = subprocess.run([sys.executable, "-c", f"import torch; torch.jit.load({str(tmp_path / 'model.neuron')!r})"],
                             capture_output=True, text=True)
    assert without.returncode != 0 and "neuron::forward_v2" in without.stderr
    assert torch_neuronx.standin.describe(tmp_path / "model.neuron")["target"] == "inf2"


def test_the_placeholders_and_a_torch_mismatch_fail_on_import(sdk_variant, in_process):
    for variant, error in ((dict(torch_neuronx="placeholder"), "WRONG PACKAGE"), (dict(built_for="2.1.0"), "undefined symbol")):
        in_process(sdk_variant(**variant))
        with pytest.raises(ImportError, match=error):
            import torch_neuronx  # noqa: F401
    in_process(sdk_variant(neuronx_cc="placeholder"))
    with pytest.raises(ModuleNotFoundError):  # PyPI's neuronx-cc installs a folder named `neuronx-cc`
        import neuronxcc  # noqa: F401


def test_input_output_aliases_are_checked_like_torch_neuronx(torch_neuronx):
    model = Accumulator().eval()

    def trace(func, aliases):
        return torch_neuronx.trace(func, torch.ones(3), input_output_aliases=aliases, cpu_backend=True, compiler_args=["--target", "inf2"])

    with pytest.raises(TypeError, match="must be a dict"):
        trace(model, [(model.total[0], 1)])
    with pytest.raises(KeyError):  # a key that is not a parameter of func (a copy of one is not)
        trace(model, {model.total[0].clone(): 1})
    with pytest.raises(AssertionError, match="expected to be of type torch.nn.Module"):
        trace(lambda x: (x, x), {model.total[0]: 1})
    with pytest.raises(RuntimeError, match="output 0 is \\(1,\\).*its state tensor is \\(3,\\)"):
        trace(model, {model.total[0]: 0})
    with pytest.raises(RuntimeError, match="output 2 does not exist"):
        trace(model, {model.total[0]: 2})
    compiled = trace(model, {model.total[0]: 1})
    assert [name for name, _ in compiled.named_parameters()] == ["states.0"], "the state is the traced module's parameter"
    assert torch_neuronx.standin.describe(compiled)["aliases"] == {"1": 1}, "output 1 updates input 1 (the state, after x)"
