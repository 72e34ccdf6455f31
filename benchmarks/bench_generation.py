"""A decoder LLM of a real size, compiled vs eager transformers (static and dynamic cache), in one run.

Builds a Llama-architecture model from a config with random weights (no hub; the default is
TinyLlama-1.1B's shape scaled to `--layers`), exports it for text-generation with the engine
(prefill + decode graphs, validated against transformers' generate), then runs `neuron-export
benchmark` on it: time to first token, time per token and tokens/s of the three sides, interleaved.

    python benchmarks/bench_generation.py                              # inductor, 4 layers, cache 256
    python benchmarks/bench_generation.py --layers 22 --backend torchscript --threads 2
    python benchmarks/bench_generation.py --sequence_length 64,256   # a 64-token prompt graph too
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neuron_export import ExportOptions, export  # noqa: E402
from neuron_export.benchmark import BenchmarkOptions, benchmark, format_report  # noqa: E402
from neuron_export.bucketing import parse_shape_text  # noqa: E402

# TinyLlama/TinyLlama-1.1B-Chat-v1.0's config.json (22 layers), with the layer count an option.
TINYLLAMA = dict(vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_attention_heads=32, num_key_value_heads=4,
                 max_position_embeddings=2048, rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2)


def build_model(folder: Path, layers: int) -> Path:
    import transformers

    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(num_hidden_layers=layers, **TINYLLAMA)).eval()
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--backend", default="inductor", choices=("inductor", "torchscript"))
    parser.add_argument("--sequence_length", type=lambda text: parse_shape_text("--sequence_length", text), default=256,
                        help="the KV cache; several values (64,256): a prompt graph per value, the cache of the largest")
    parser.add_argument("--prompt_length", type=int, default=64)
    parser.add_argument("--new_tokens", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    print(f"host: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}")
    with tempfile.TemporaryDirectory(prefix="bench-generation-") as scratch:
        folder = build_model(Path(scratch) / "model", args.layers)
        options = ExportOptions(backend=args.backend, sequence_length=args.sequence_length, use_cache=False)
        result = export(folder, Path(scratch) / "artifact", options)
        print(f"export: {sum(result.timings.values()):.0f} s, validation passed: {result.validation_passed}")
        settings = BenchmarkOptions(iterations=args.iterations, rounds=min(5, args.iterations), warmup=1, threads=args.threads,
                                    prompt_length=args.prompt_length, new_tokens=args.new_tokens, save=False)
        print("\n".join(format_report(benchmark(result.artifact, settings))))


if __name__ == "__main__":
    main()
