"""How the inductor backend builds CPU code: the ISA level, the GEMM kernels, threads, int8.

Measured on an AMD EPYC Zen 4 (bert-base size, batch 1 x 128, one thread; README "Benchmarks"):
- With weights frozen (-O2), Inductor hands fp32 linears to oneDNN (packed weights; in an AOT
  package never to MKL, whose packed weights cannot be saved). oneDNN's AVX-512 kernels are the
  fastest here, but its AVX2 kernels are slower than MKL's and than Inductor's own C++ GEMM template,
  whose micro-kernels are compiled into the package. So artifacts whose code targets AVX2 get the
  C++ GEMM template; AVX-512 artifacts keep oneDNN.
- Threads: generated kernels are built with cpp.dynamic_threads, so they run with the thread count
  of the calling process (torch.set_num_threads / OMP_NUM_THREADS), whatever the compile host had.
  The C++ GEMM template splits each GEMM into tasks for a thread count fixed at compile time
  (`threads`, default this host's cores): fewer threads run the tasks in turn, more threads than
  tasks idle in those GEMMs. The manifest records that count and loading warns when it differs.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import platform
import warnings
from pathlib import Path
from typing import Any, Optional

import torch

from .. import cpu
from ..options import ExportOptions


# The X86 Inductor quantizer's dynamic scheme: int8 weights per output channel (symmetric), int8
# activations per tensor, scale and zero point computed from each call's activations.
INT8_DYNAMIC = "int8-dynamic"


def target_level(options: ExportOptions) -> Optional[str]:
    """The ISA level the artifact's CPU code is built for: the option's, or this host's for native."""
    return cpu.host_level() if options.cpu_isa == "native" else options.cpu_isa


def uses_gemm_template(options: ExportOptions) -> bool:
    """fp32 GEMMs through Inductor's C++ template (frozen weights, AVX2 code); else oneDNN / ATen."""
    return (options.device == "cpu" and options.optlevel >= 2 and options.auto_cast == "none"
            and options.quantize == "none" and target_level(options) == "avx2")


def gemm_threads(options: ExportOptions) -> Optional[int]:
    """The thread count the template's GEMMs are split for, or None when every kernel follows the runtime count."""
    return (options.threads or cpu.physical_cores()) if uses_gemm_template(options) else None


def prepacking_reason(options: ExportOptions) -> Optional[str]:
    """Why this build needs its weights pre-packed inside the compiled code (cpp.weight_prepack), or None."""
    if options.quantize != "none":
        return f"--quantize {options.quantize} (oneDNN's int8 linears)"
    if uses_gemm_template(options):
        return "AVX2 code (Inductor's C++ GEMM template)"
    return None


def cpu_configs(options: ExportOptions) -> dict[str, Any]:
    """Inductor settings for a CPU artifact with these options (added to the -O level's)."""
    configs: dict[str, Any] = {"cpp.dynamic_threads": True}
    if options.cpu_isa != "native":
        level = cpu.ISA_LEVELS[options.cpu_isa]
        configs.update({"cpp.simdlen": level.simdlen, "cpp.march": level.march})
    if uses_gemm_template(options):
        configs.update({"max_autotune_gemm": True, "max_autotune_gemm_backends": "CPP", "cpp.threads": gemm_threads(options)})
    if options.quantize != "none":
        configs["freezing"] = True  # the int8 linear lowering happens in the freezing passes
    return configs


def isa_problem(options: ExportOptions) -> Optional[str]:
    """Why --cpu_isa cannot be built (and checked) on this host, or None."""
    if options.cpu_isa == "native":
        return None
    if not cpu.is_x86():
        return f"--cpu_isa {options.cpu_isa} is an x86 level; this host is {platform.machine()} (use --cpu_isa native)"
    if not hasattr(torch._inductor.config.cpp, "march"):
        return f"--cpu_isa {options.cpu_isa} needs torch >= 2.13 (Inductor's cpp.march); this is torch {torch.__version__}"
    missing = cpu.missing_flags(cpu.ISA_LEVELS[options.cpu_isa].flags)
    if missing:
        return (f"--cpu_isa {options.cpu_isa}: this host lacks {', '.join(missing)}, so it can neither build nor check "
                f"such code (highest level here: {cpu.host_level() or 'below avx2'})")
    return None


def required_flags(options: ExportOptions, package: Path) -> list[str]:
    """CPU flags the package's machine code needs: the level's, plus extensions found in its code
    (VNNI, bf16, AMX) for AVX-512; every vector extension of this host for a native build."""
    if options.cpu_isa == "native":
        return cpu.native_flags()
    level = list(cpu.ISA_LEVELS[options.cpu_isa].flags)
    if options.cpu_isa == "avx2":
        return sorted(level)  # -march=x86-64-v3 and AVX2 kernels: nothing beyond the level can appear
    return sorted(set(level) | set(cpu.instructions_beyond_level(package)))


def quantization_problem(options: ExportOptions) -> Optional[str]:
    if options.quantize == "none":
        return None
    if options.device != "cpu" or not cpu.is_x86():
        return f"--quantize {options.quantize} uses the X86 Inductor quantizer: x86 CPUs only (on a GPU use --auto_cast)"
    if importlib.util.find_spec("torchao") is None:
        return f"--quantize {options.quantize} needs torchao (pip install torchao), where PyTorch's PT2E quantization lives now"
    try:
        _x86_quantizer()
    except Exception as error:  # a torchao built for another torch fails in many ways on import
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        return (f"--quantize {options.quantize}: this torchao does not work with torch {torch.__version__} ({first_line}); "
                "install the torchao release paired with this torch")
    if target_level(options) != "avx512":
        where = "--cpu_isa avx2" if options.cpu_isa == "avx2" else "this CPU, which has no AVX-512"
        return (f"--quantize {options.quantize} needs AVX-512 code, and {where} would run Inductor's int8 linears on "
                "oneDNN's reference kernel (measured about 1000x slower than fp32); keep fp32 for AVX2 CPUs")
    return None


def quantize_int8_dynamic(program: torch.export.ExportedProgram, example: tuple, dynamic_shapes) -> torch.export.ExportedProgram:
    """The program with every nn.Linear in int8 (PT2E: annotate, convert), exported again for AOTInductor.

    Importing torchao's x86_inductor_quantizer registers the freezing passes that lower the
    quantize / dequantize pattern to oneDNN's int8 linear: it must happen in the compiling process."""
    x86, prepare_pt2e, convert_pt2e = _x86_quantizer()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantizer = x86.X86InductorQuantizer()
        quantizer.set_module_type_qconfig(torch.nn.Linear, x86.get_default_x86_inductor_quantization_config(is_dynamic=True))
        module = program.module()
        # Outputs nobody reads (e.g. BERT's pooler under a sentence-transformers head) leave fusion
        # partitions without output nodes, which the quantizer's pattern matching cannot handle.
        module.graph.eliminate_dead_code()
        module.recompile()
        with torch.no_grad():
            prepared = prepare_pt2e(module, quantizer)
            prepared(*example)  # dynamic: nothing to calibrate, but the observers must have run once
            converted = convert_pt2e(prepared)
            return torch.export.export(converted, example, dynamic_shapes=dynamic_shapes, strict=False)


def _x86_quantizer():
    """torchao's X86 Inductor quantizer module, prepare_pt2e and convert_pt2e."""
    # torchao's own C++/CUDA kernels are not used on this path: do not load them (and say nothing about it).
    os.environ.setdefault("TORCHAO_FORCE_SKIP_LOADING_SO_FILES", "1")
    logging.getLogger("torchao").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as x86
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    return x86, prepare_pt2e, convert_pt2e
