"""Stable Diffusion 2.1-sized components, compiled vs eager diffusers, in one run.

Builds the SD 2.1 UNet, VAE and OpenCLIP-H text encoder from their configs with random weights (no
hub), compiles the text encoder, UNet and VAE decoder with the export engine's diffusion components
(the same wrappers, validation and loading as `neuron-export export --task stable-diffusion`), then
times both and prints seconds per image:

    s/image = 2 x text encoder (prompt + negative prompt) + steps x UNet step (batch 2: guidance)
              + VAE decode

Every component line also says its FLOPs per call (counted on its exported graph), the GFLOP/s
eager and compiled reach, and their share of the CPU's peak for the precision (of the cores used, by
wall clock; and of one core, per second of CPU time the process got: robust on a shared machine).

    python benchmarks/bench_sd.py                                   # CPU, 128 px, inductor
    python benchmarks/bench_sd.py --components unet --auto_cast matmul --auto_cast_type bf16   # CPU bf16 UNet
    python benchmarks/bench_sd.py --device cuda --resolution 512    # GPU, the issue's figure
    python benchmarks/bench_sd.py --device cuda --auto_cast matmul --auto_cast_type bf16
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neuron_export.artifact import load_artifact  # noqa: E402
from neuron_export.backends import choose_backend  # noqa: E402
from neuron_export.backends.base import cast_dtype  # noqa: E402
from neuron_export.benchmark.flops import count_flops  # noqa: E402
from neuron_export.benchmark.peak import host_peak  # noqa: E402
from neuron_export.export.build import build_component  # noqa: E402
from neuron_export.export.diffusion import input_config, make_component, pipeline_shapes  # noqa: E402
from neuron_export.export.plan import ExportPlan  # noqa: E402
from neuron_export.options import ExportOptions  # noqa: E402
from neuron_export.progress import Progress  # noqa: E402
from neuron_export.registry import DIFFUSION_TASKS  # noqa: E402
from neuron_export.sources import ModelSource  # noqa: E402

# stabilityai/stable-diffusion-2-1 (768 px, v-prediction), as in its unet/ and vae/ config.json.
SD21_UNET = dict(
    sample_size=96,
    in_channels=4,
    out_channels=4,
    layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=1024,
    attention_head_dim=(5, 10, 20, 20),
    use_linear_projection=True,
)
SD21_VAE = dict(
    in_channels=3,
    out_channels=3,
    latent_channels=4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    sample_size=768,
)
# OpenCLIP ViT-H/14 text tower (SD 2.x text_encoder/config.json).
SD21_TEXT = dict(
    vocab_size=49408,
    hidden_size=1024,
    intermediate_size=4096,
    num_hidden_layers=23,
    num_attention_heads=16,
    max_position_embeddings=77,
    hidden_act="gelu",
    projection_dim=512,
    bos_token_id=49406,
    eos_token_id=49407,
    pad_token_id=1,
)
COMPONENTS = ("text_encoder", "unet", "vae_decoder")


def build_modules() -> dict[str, torch.nn.Module]:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    vae = AutoencoderKL(**SD21_VAE).eval()
    return {
        "text_encoder": CLIPTextModel(CLIPTextConfig(**SD21_TEXT)).eval(),
        "unet": UNet2DConditionModel(**SD21_UNET).eval(),
        "vae_decoder": vae,
    }


def timed_sides(calls: dict[str, object], inputs: dict[str, torch.Tensor], iterations: int, device: str) -> dict[str, tuple[float, float]]:
    """(median seconds, mean CPU seconds) of each call, the calls alternated (so load from other
    processes hits them alike), after one warm-up call of each."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    cpu: dict[str, list[float]] = {name: [] for name in calls}
    for index in range(iterations + 1):
        for name, call in calls.items():
            if device == "cuda":
                torch.cuda.synchronize()
            start, cpu_start = time.perf_counter(), time.process_time()
            with torch.no_grad():
                call(inputs)
            if device == "cuda":
                torch.cuda.synchronize()
            if index:
                times[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - cpu_start)
    return {name: (statistics.median(times[name]), statistics.fmean(cpu[name])) for name in calls}


def efficiency(flops: int, seconds: float, cpu_seconds: float, precision: str, device: str) -> str:
    """GFLOP/s and, on CPU, % of peak (wall clock, the threads used) and % of one core's peak per CPU second."""
    gflops = flops / seconds / 1e9
    if device != "cpu":
        return f"{gflops:7.1f} GFLOP/s"
    peak = host_peak()
    threads = torch.get_num_threads()
    return (f"{gflops:7.1f} GFLOP/s = {100 * gflops / peak.gflops(precision, threads):4.1f}% of peak, "
            f"{100 * flops / cpu_seconds / 1e9 / peak.gflops(precision, 1):4.1f}% of a core's per CPU s")


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    from neuron_export.benchmark.report import host_summary

    host = host_summary()
    return (f"{host['processor']} CPU, ISA {host['isa']} (torch: {host['cpu_capability']}), "
            f"{torch.get_num_threads()} threads")


def measure_component(name: str, spec, eager: torch.nn.Module, shapes, plan: ExportPlan, folder: Path, args, iterations: int) -> dict:
    """Compile one component (validated), count its FLOPs, time it against eager; print its line."""
    component = make_component(spec, eager, shapes, input_config(spec, eager), plan.options, validate=True)
    options = component.options or plan.options  # the VAE stays fp32 whatever the cast
    dtype = cast_dtype(options)
    start = time.perf_counter()
    _, report = build_component(component, plan, folder, Progress(None, 4))
    compile_s = time.perf_counter() - start
    compiled = load_artifact(folder)
    reference = component.module.to(args.device)
    inputs = {n: t.to(args.device) for n, t in component.example.items()}
    flops = count_flops(component.module, tuple(component.example[n] for n in component.input_names)).total

    def run_eager(named, module=reference, order=component.input_names, cast=dtype):
        with torch.autocast(args.device, dtype=cast, enabled=cast is not None and cast != torch.float32):
            return module(*[named[n] for n in order])

    casting = dtype is not None and dtype != torch.float32
    # With a cast, eager also runs at that precision, so one ratio measures compilation alone and the
    # other (against fp32 eager, what diffusers runs by default) what the user gets.
    calls = {"eager": partial(run_eager, cast=None), **({"eager_cast": run_eager} if casting else {}),
             "compiled": lambda named: compiled(**named)}
    timings = timed_sides(calls, inputs, iterations, args.device)
    (eager_s, eager_cpu), (compiled_s, compiled_cpu) = timings["eager"], timings["compiled"]
    precision = options.auto_cast_type if options.auto_cast != "none" and options.auto_cast_type in ("bf16", "fp16") else "fp32"
    print(f"  {name:<13} eager fp32 {eager_s * 1e3:9.1f} ms   compiled {compiled_s * 1e3:9.1f} ms   x{eager_s / compiled_s:5.2f}   "
          f"(compile {compile_s:.0f} s, validation {'passed' if report and report.passed else 'FAILED'})", flush=True)
    if casting:
        cast_s = timings["eager_cast"][0]
        print(f"  {'':<13} eager {precision} autocast {cast_s * 1e3:9.1f} ms: compiled x{cast_s / compiled_s:5.2f} of it", flush=True)
    print(f"  {'':<13} {flops / 1e9:.2f} GFLOP per call; eager fp32 {efficiency(flops, eager_s, eager_cpu, 'fp32', args.device)}",
          flush=True)
    print(f"  {'':<13} compiled {efficiency(flops, compiled_s, compiled_cpu, precision, args.device)} ({precision} peak)", flush=True)
    return {"eager_s": eager_s, "compiled_s": compiled_s, "passed": report.passed if report else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--backend", choices=("inductor", "torchscript"), default="inductor")
    parser.add_argument("--components", nargs="+", choices=COMPONENTS, default=list(COMPONENTS))
    parser.add_argument("--resolution", type=int, help="image height and width (default: 128 on CPU, 512 on GPU)")
    parser.add_argument("--steps", type=int, default=25, help="denoising steps per image")
    parser.add_argument("--iterations", type=int, help="timed calls per component (default: 3 on CPU, 20 on GPU)")
    parser.add_argument("--threads", type=int, help="intra-op threads (default: all cores)")
    parser.add_argument("--auto_cast", choices=("none", "matmul", "all"), default="none")
    parser.add_argument("--auto_cast_type", choices=("bf16", "fp16", "tf32"))
    parser.add_argument("-O", dest="optlevel", type=int, choices=(1, 2, 3), default=2)
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("skipped: --device cuda and this host has no CUDA device")
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    resolution = args.resolution or (512 if args.device == "cuda" else 128)
    iterations = args.iterations or (20 if args.device == "cuda" else 3)
    options = ExportOptions(
        backend=args.backend, device=args.device, height=resolution, width=resolution, optlevel=args.optlevel,
        auto_cast=args.auto_cast, auto_cast_type=(args.auto_cast_type or "bf16") if args.auto_cast != "none" else None,
    )
    backend, reason = choose_backend(options)

    print(f"Building SD 2.1-sized components (random weights) for {resolution}x{resolution} ...", flush=True)
    modules = build_modules()
    shapes = pipeline_shapes(dict(modules["unet"].config), dict(modules["vae_decoder"].config), 77, None, options)
    specs = {spec.name: spec for spec in DIFFUSION_TASKS["stable-diffusion"].components}
    rows = {}
    with tempfile.TemporaryDirectory(prefix="bench-sd-") as scratch:
        # The components are built here, not read from a pipeline folder: a plan of what they are.
        source = ModelSource("SD 2.1-sized, random weights", Path(scratch), "diffusers", {})
        plan = ExportPlan(source, "stable-diffusion", backend, reason, options, shapes, shapes, components=[])
        for name in args.components:
            folder = Path(scratch) / name
            folder.mkdir()
            rows[name] = measure_component(name, specs[name], modules.pop(name), shapes, plan, folder, args, iterations)
            gc.collect()
            if args.device == "cuda":
                torch.cuda.empty_cache()
    print()
    print(f"device: {device_name(args.device)}; torch {torch.__version__}; backend {backend.name} -O{options.optlevel}; "
          f"auto_cast {options.auto_cast}{' ' + options.auto_cast_type if options.auto_cast_type else ''}")
    print(f"{resolution}x{resolution}, {args.steps} steps, batch 1 (UNet batch 2 for guidance), median of {iterations} calls")
    if "unet" in rows:
        unet = rows["unet"]
        print(f"UNet step:  eager {unet['eager_s'] * 1e3:.1f} ms, compiled {unet['compiled_s'] * 1e3:.1f} ms, "
              f"speed-up x{unet['eager_s'] / unet['compiled_s']:.2f}")
    if set(rows) == set(COMPONENTS):
        eager_image, compiled_image = (2 * rows["text_encoder"][key] + args.steps * rows["unet"][key] + rows["vae_decoder"][key]
                                       for key in ("eager_s", "compiled_s"))
        print(f"s/image:    eager {eager_image:.2f} s, compiled {compiled_image:.2f} s, speed-up x{eager_image / compiled_image:.2f}")
    return 0 if all(row["passed"] is not False for row in rows.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
