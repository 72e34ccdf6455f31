"""The attention AWS's Stable Diffusion samples compile for Neuron.

aws-neuron-samples, torch-neuronx/inference/hf_pretrained_sd2_512_inference.ipynb (and the SD 1.5,
SD 2 768 and SDXL notebooks; optimum-neuron's optimization_utils.get_attention_scores_sd does the
same): `NEURON_FUSE_SOFTMAX=1` for the compiler, diffusers' plain attention processor (batched
matmuls, no fused SDPA kernel), and attention scores computed so that a self-attention's softmax
runs along the first axis of `key @ query^T`, then permuted back. The math equals the usual
softmax(Q K^T * scale) V; only the layout handed to the compiler differs. Cross-attention (keys of
another length) and masked attention keep diffusers' own score computation.

The samples' newest revisions also swap in an NKI flash-attention kernel (torch_neuronx's
`nki_jit`), which runs on a NeuronCore only; it is not used here.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch


def neuron_attention_scores(attention, query: torch.Tensor, key: torch.Tensor, attention_mask=None) -> torch.Tensor:
    """diffusers' Attention.get_attention_scores as the samples compute it for Neuron."""
    if attention_mask is not None or query.shape != key.shape:
        return _ORIGINAL_SCORES(attention, query, key, attention_mask)
    dtype = query.dtype
    if attention.upcast_attention:
        query, key = query.float(), key.float()
    scores = torch.bmm(key, query.transpose(-1, -2)) * attention.scale  # (batch, keys, queries)
    if attention.upcast_softmax:
        scores = scores.float()
    return scores.softmax(dim=1).permute(0, 2, 1).to(dtype)


_ORIGINAL_SCORES = None  # diffusers' own, while neuron_attention() replaces it


@contextlib.contextmanager
def neuron_attention(module: torch.nn.Module) -> Iterator[None]:
    """While tracing and compiling `module` (a UNet or VAE, or a wrapper holding one): the samples'
    attention on every diffusers Attention in it; restored afterwards, so the eager module that
    validation compares with is untouched."""
    global _ORIGINAL_SCORES
    from diffusers.models.attention_processor import Attention, AttnProcessor

    attentions = [m for m in module.modules() if isinstance(m, Attention)]
    processors = [a.processor for a in attentions]
    _ORIGINAL_SCORES = Attention.__dict__["get_attention_scores"]
    fuse_softmax = os.environ.get("NEURON_FUSE_SOFTMAX")
    try:
        os.environ["NEURON_FUSE_SOFTMAX"] = "1"  # read by neuronx-cc: the custom softmax lowering the scores rely on
        Attention.get_attention_scores = neuron_attention_scores
        for attention in attentions:
            attention.set_processor(AttnProcessor())
        yield
    finally:
        for attention, processor in zip(attentions, processors):
            attention.set_processor(processor)
        Attention.get_attention_scores = _ORIGINAL_SCORES
        if fuse_softmax is None:
            os.environ.pop("NEURON_FUSE_SOFTMAX", None)
        else:
            os.environ["NEURON_FUSE_SOFTMAX"] = fuse_softmax
