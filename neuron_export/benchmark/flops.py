"""FLOPs of one call, counted from the model's exported graph (torch.export), never from a table.

The graph is decomposed to core ATen ops (linear -> addmm, attention -> bmm or the fused CPU SDPA)
and each op's FLOPs come from torch.utils.flop_counter's formulas applied to the shapes recorded
in the graph, so nothing runs. torch 2.13 has no formula for CPU's fused attention op, which would
count attention as 0: one is registered here. FLOP = 2 x multiply-accumulates; elementwise ops,
norms and softmax are not counted (as in every FLOP counter).
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class FlopCount:
    total: int
    by_op: dict[str, int] = field(default_factory=dict)

    @property
    def gflop(self) -> float:
        return self.total / 1e9


@functools.cache
def _register_cpu_attention_formula() -> None:
    from torch.utils.flop_counter import flop_registry, register_flop_formula, sdpa_flop_count

    cpu_sdpa = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if cpu_sdpa is None or cpu_sdpa in flop_registry:
        return

    @register_flop_formula(cpu_sdpa, get_raw=True)
    def _cpu_sdpa_flops(query, key, value, *args, out_val=None, **kwargs) -> int:
        return sdpa_flop_count(query.shape, key.shape, value.shape)


def count_graph_flops(program: torch.export.ExportedProgram) -> FlopCount:
    """FLOPs of one call of an exported program (decomposed to core ATen ops first)."""
    from torch.utils.flop_counter import flop_registry

    _register_cpu_attention_formula()
    graph = program.run_decompositions().graph
    by_op: Counter[str] = Counter()
    for node in graph.nodes:
        if node.op != "call_function" or not hasattr(node.target, "overloadpacket"):
            continue
        formula = flop_registry.get(node.target.overloadpacket)
        if formula is None:
            continue
        args, kwargs = torch.fx.node.map_arg((node.args, node.kwargs), _meta)
        by_op[str(node.target.overloadpacket).removeprefix("aten.")] += int(formula(*args, **kwargs, out_val=node.meta.get("val")))
    return FlopCount(sum(by_op.values()), dict(by_op))


def _meta(node: torch.fx.Node) -> Any:
    return node.meta.get("val")


def count_flops(module: torch.nn.Module, args: tuple = (), kwargs: dict | None = None) -> FlopCount:
    """FLOPs of `module(*args, **kwargs)`, exported (non-strict, no grad) and counted."""
    with torch.no_grad():
        program = torch.export.export(module, tuple(args), kwargs or {}, strict=False)
    return count_graph_flops(program)
