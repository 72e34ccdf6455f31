"""Per-call latency of the NeuronModel classes vs the eager transformers model, in one run.

Models: the real all-MiniLM-L6-v2 (NeuronModelForSentenceTransformers vs eager BertModel + mean
pooling + normalize) and a bert-base-sized classifier (BertConfig defaults, random weights, built
locally; NeuronModelForSequenceClassification vs eager BertForSequenceClassification), batch 1
(or --batch_sizes), sequence 128, for the inductor and torchscript backends, on the CPU or a CUDA GPU.
Prints the host (CPU vector ISA, GPU name), medians, the eager/compiled ratio, and the padding +
unpadding overhead of the NeuronModel wrapper as % of the compiled call.

    python benchmarks/bench_models.py [--iterations 30] [--models minilm bert-base] [--backends inductor torchscript]
    python benchmarks/bench_models.py --device cuda --models bert-base --backends inductor --batch_sizes 1 8

The machine may be shared and noisy: the sides run interleaved, call after call, so a busy
moment slows both alike; compare ratios from one run only.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import transformers  # noqa: E402

from neuron_export import NeuronModelForSentenceTransformers, NeuronModelForSequenceClassification  # noqa: E402
from neuron_export.demo import minilm_path  # noqa: E402

SEQUENCE = 128
SHORT = 100  # tokens of the input that needs padding up to SEQUENCE


class MeanPooledEncoder(torch.nn.Module):
    """What sentence-transformers runs for all-MiniLM-L6-v2: encoder, masked mean, L2 norm."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids, attention_mask, token_type_ids):
        tokens = self.encoder(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
        return torch.nn.functional.normalize((tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=1)


def minilm(workdir: Path):
    return minilm_path(), NeuronModelForSentenceTransformers, MeanPooledEncoder(transformers.AutoModel.from_pretrained(minilm_path()))


def bert_base(workdir: Path):
    folder = workdir / "bert-base-random"
    if not (folder / "config.json").is_file():
        torch.manual_seed(0)
        transformers.BertForSequenceClassification(transformers.BertConfig()).save_pretrained(folder)
    return folder, NeuronModelForSequenceClassification, transformers.BertForSequenceClassification.from_pretrained(folder)


MODELS = {"minilm": minilm, "bert-base": bert_base}


def text_inputs(vocab_size: int, batch: int, length: int, device: str) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    inputs = {
        "input_ids": torch.randint(1000, vocab_size, (batch, length), generator=generator),
        "attention_mask": torch.ones(batch, length, dtype=torch.long),
        "token_type_ids": torch.zeros(batch, length, dtype=torch.long),
    }
    return {name: tensor.to(device) for name, tensor in inputs.items()}


def synchronized(call: Callable[[], object], device: str) -> Callable[[], object]:
    """The call, finished before it returns: CUDA kernels run asynchronously, the timer must wait for them."""
    if device != "cuda":
        return call

    def run():
        call()
        torch.cuda.synchronize()

    return run


def interleaved_medians(calls: dict[str, Callable[[], object]], iterations: int, warmup: int) -> dict[str, float]:
    """Median seconds per call of each side, the sides taking turns call after call."""
    for call in calls.values():
        for _ in range(warmup):
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(iterations):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def overhead(model, inputs: dict[str, torch.Tensor], repeats: int = 2000) -> float:
    """Median seconds of the wrapper's own work (pad the inputs, cut the padding from the outputs)."""
    padded, sizes = model.pad_inputs(inputs)
    raw = model.compiled(**padded)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        padded, sizes = model.pad_inputs(inputs)
        model.unpad_outputs(raw, sizes)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def run(name: str, backend: str, workdir: Path, iterations: int, warmup: int, device: str, batch: int) -> dict:
    folder, model_class, eager = MODELS[name](workdir)
    eager.eval().to(device)
    start = time.perf_counter()
    model = model_class.from_pretrained(folder, export=True, backend=backend, device=device, batch_size=batch,
                                        sequence_length=SEQUENCE, use_cache=False)
    compile_seconds = time.perf_counter() - start
    full = text_inputs(model.config.vocab_size, batch, SEQUENCE, device)
    short = text_inputs(model.config.vocab_size, batch, SHORT, device)
    padded, _ = model.pad_inputs(short)

    def eager_call():
        with torch.inference_mode():
            eager(**full)

    calls = {
        "eager": eager_call,
        "compiled": lambda: model.compiled(**padded),  # the artifact alone, inputs already at the compiled shape
        "class": lambda: model(**full),  # NeuronModel: the transformers calling convention
        "class_padded": lambda: model(**short),  # ... with 28 tokens of padding added and removed
    }
    medians = interleaved_medians({side: synchronized(call, device) for side, call in calls.items()}, iterations, warmup)
    return {
        "model": name,
        "backend": backend,
        "batch": batch,
        "compile_s": compile_seconds,
        **medians,
        "overhead_full": overhead(model, full),
        "overhead_short": overhead(model, short),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--backends", nargs="+", choices=("inductor", "torchscript"), default=["inductor", "torchscript"])
    parser.add_argument("--iterations", type=int, default=30, help="timed calls per side (default 30)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls per side first (default 5)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--batch_sizes", nargs="+", type=int, default=[1], help="one export per batch size (default 1)")
    args = parser.parse_args(argv)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    with tempfile.TemporaryDirectory(prefix="bench_models_") as workdir:
        # Inductor's cache grows by hundreds of MB per compile: keep it in the throw-away folder.
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path(workdir) / "inductor"))
        print(f"torch {torch.__version__}, transformers {transformers.__version__}, {platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} cores, {torch.get_num_threads()} threads, CPU ISA {torch.backends.cpu.get_cpu_capability()}"
              f"{', GPU ' + torch.cuda.get_device_name() if args.device == 'cuda' else ''}; device {args.device}, "
              f"sequence {SEQUENCE}, medians of {args.iterations} interleaved calls")
        header = (f"{'model':<10} {'backend':<12} {'batch':>5} {'compile':>8} {'eager':>9} {'compiled':>9} {'class':>9} {'class pad':>9} {'speed-up':>9} "
                  f"{'wrapper full':>13} {'wrapper pad':>13}")
        print(header)
        print("-" * len(header))
        for name, backend, batch in itertools.product(args.models, args.backends, args.batch_sizes):
            r = run(name, backend, Path(workdir), args.iterations, args.warmup, args.device, batch)
            print(
                f"{r['model']:<10} {r['backend']:<12} {r['batch']:>5} {r['compile_s']:>7.1f}s {r['eager'] * 1e3:>7.2f}ms "
                f"{r['compiled'] * 1e3:>7.2f}ms {r['class'] * 1e3:>7.2f}ms {r['class_padded'] * 1e3:>7.2f}ms {r['eager'] / r['class']:>8.2f}x "
                f"{_overhead(r['overhead_full'], r['compiled']):>13} {_overhead(r['overhead_short'], r['compiled']):>13}",
                flush=True,
            )
        print("compiled: the artifact's own call (CompiledModel) at the compiled shape; class: the NeuronModel call "
              f"(transformers calling convention, output type); class pad: the same with a {SHORT}-token input; "
              "speed-up: eager / class.\n"
              f"wrapper full / pad: the NeuronModel's padding + unpadding work alone (median of 2000), as % of the "
              f"compiled call, for a {SEQUENCE}-token input (nothing to pad) and a {SHORT}-token one padded to {SEQUENCE}.")
    return 0


def _overhead(seconds: float, compiled: float) -> str:
    return f"{seconds * 1e6:.0f}us {100 * seconds / compiled:.2f}%"


if __name__ == "__main__":
    sys.exit(main())
