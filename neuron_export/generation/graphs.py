"""The traced graphs of generative models, built on transformers' own modelling code.

Each graph calls the eager transformers model with a cache of our own (SlotCache) and an explicit
4D attention mask, so nothing in it depends on Python-side cache bookkeeping that a trace would
freeze: every layer writes its keys and values at the positions it is given, and attends to the
slots the mask allows. The decode graphs take the caches as inputs and update them in place (the
state of export/generation.py: held by the loaded model between calls).

- PrefillGraph: a right-padded prompt -> the logits of each row's last real token, and every
  layer's keys / values padded to the cache length (loaded into the decode graph's state).
- DecodeGraph: one token per row at its own position -> logits; writes the token's keys / values.
- EncoderGraph: the encoder of an encoder-decoder, plus every decoder layer's cross-attention keys
  and values of its output (computed once per input rather than at every step).
- DecoderStepGraph: one decoder token (all rows at the same position) -> logits.
"""

from __future__ import annotations

import inspect
from typing import Any, Optional, Sequence

import torch
from transformers.cache_utils import Cache, CacheLayerMixin, EncoderDecoderCache


class SlotLayer(CacheLayerMixin):
    """One layer's cache. Recording (no `positions`): keeps what the layer computed (a prompt or
    cross-attention keys / values). Writing: scatters the new keys / values into `keys` / `values`
    at each row's `positions` (in place) and returns the whole cache for attention."""

    is_compileable = True
    is_sliding = False

    def __init__(self, keys: Optional[torch.Tensor] = None, values: Optional[torch.Tensor] = None,
                 positions: Optional[torch.Tensor] = None, seen: Any = 0):
        super().__init__()
        self.keys, self.values, self.positions = keys, values, positions
        self.seen = seen  # what get_seq_length reports (T5 offsets its relative positions by it)
        self.is_initialized = True

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        """Nothing to allocate: the caches are the graph's inputs."""

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any):
        if self.positions is None:
            self.keys, self.values = key_states, value_states
            return key_states, value_states
        batch, heads, length, _ = key_states.shape
        index = self.positions.view(batch, 1, length, 1)
        self.keys.scatter_(2, index.expand(-1, heads, -1, key_states.shape[-1]), key_states.to(self.keys.dtype))
        self.values.scatter_(2, index.expand(-1, heads, -1, value_states.shape[-1]), value_states.to(self.values.dtype))
        return self.keys, self.values

    def get_seq_length(self) -> Any:
        return self.seen

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        raise NotImplementedError("the graphs pass a 4D attention mask")

    def get_max_length(self) -> int:
        return -1 if self.keys is None else int(self.keys.shape[2])


class SlotCache(Cache):
    def __init__(self, layers: Sequence[SlotLayer]):
        super().__init__(layers=list(layers))


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(batch, queries, keys) booleans -> the (batch, 1, queries, keys) additive mask transformers
    passes through unchanged to every attention implementation."""
    blocked = torch.tensor(torch.finfo(dtype).min, dtype=dtype, device=allowed.device)
    return torch.where(allowed, torch.zeros((), dtype=dtype, device=allowed.device), blocked).unsqueeze(1)


def decoder_layer_count(config: Any) -> int:
    """Layers of the decoder (T5 and Whisper name them apart from their encoder's)."""
    for name in ("num_decoder_layers", "decoder_layers"):
        if isinstance(getattr(config, name, None), int):
            return getattr(config, name)
    return config.get_text_config(decoder=True).num_hidden_layers


def cache_names(prefix: str, layers: int) -> list[str]:
    """past_key.0, past_value.0, past_key.1, ...: the order of the caches in every graph's signature."""
    return [f"{prefix}_{kind}.{index}" for index in range(layers) for kind in ("key", "value")]


def _recorded(layers: Sequence[SlotLayer]) -> list[torch.Tensor]:
    return [tensor for layer in layers for tensor in (layer.keys, layer.values)]


def _writing_layers(caches: Sequence[torch.Tensor], positions: torch.Tensor, seen: Any) -> list[SlotLayer]:
    return [SlotLayer(caches[i], caches[i + 1], positions, seen) for i in range(0, len(caches), 2)]


class PrefillGraph(torch.nn.Module):
    """(input_ids, attention_mask), prompts right-padded -> (logits, past_key.0, past_value.0, ...)."""

    def __init__(self, model: torch.nn.Module, cache_length: int):
        super().__init__()
        self.model = model
        self.cache_length = cache_length
        self.layers = decoder_layer_count(model.config)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        batch, length = input_ids.shape
        positions = torch.arange(length, device=input_ids.device).unsqueeze(0).expand(batch, length)
        causal = positions.unsqueeze(-1) >= positions.unsqueeze(1)
        mask = additive_mask(causal & attention_mask.bool().unsqueeze(1))
        layers = [SlotLayer() for _ in range(self.layers)]
        last = attention_mask.sum(-1) - 1  # each row's last real token
        # logits_to_keep picks the same positions in every row: keep all rows' last ones, take the diagonal.
        logits = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions, cache=SlotCache(layers),
                            use_cache=True, logits_to_keep=last).logits
        rows = torch.arange(batch, device=input_ids.device)
        padding = (0, 0, 0, self.cache_length - length)
        return (logits[rows, rows], *(torch.nn.functional.pad(t, padding) for t in _recorded(layers)))


class DecodeGraph(torch.nn.Module):
    """(input_ids (B, 1), position_ids (B, 1), past_key.0, past_value.0, ...) -> (logits,), the
    caches updated in place at each row's position."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor, *caches: torch.Tensor) -> tuple[torch.Tensor]:
        batch, length = input_ids.shape[0], caches[0].shape[2]
        slots = torch.arange(length, device=input_ids.device).view(1, 1, length)
        mask = additive_mask(slots <= position_ids.view(batch, 1, 1))
        cache = SlotCache(_writing_layers(caches, position_ids, 0))
        logits = self.model(input_ids=input_ids, attention_mask=mask, position_ids=position_ids, cache=cache, use_cache=True).logits
        return (logits[:, -1],)


class EncoderGraph(torch.nn.Module):
    """Encoder inputs -> (cross_key.0, cross_value.0, ...): the encoder output projected by every
    decoder layer's cross-attention, recorded from one decoder step on the start token."""

    def __init__(self, model: torch.nn.Module, input_names: Sequence[str]):
        super().__init__()
        self.model = model
        self.input_names = list(input_names)
        self.layers = decoder_layer_count(model.config)
        self.start = int(model.config.decoder_start_token_id)

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        named = dict(zip(self.input_names, inputs))
        encoded = self.model.get_encoder()(**named).last_hidden_state
        batch = encoded.shape[0]
        cross = [SlotLayer() for _ in range(self.layers)]
        cache = EncoderDecoderCache(SlotCache([SlotLayer() for _ in range(self.layers)]), SlotCache(cross))
        start = torch.full((batch, 1), self.start, dtype=torch.long, device=encoded.device)
        self.model(encoder_outputs=(encoded,), decoder_input_ids=start, decoder_attention_mask=torch.zeros(batch, 1, 1, 1, device=encoded.device),
                   cache=cache, use_cache=True, attention_mask=named.get("attention_mask"))
        return tuple(_recorded(cross))


class DecoderStepGraph(torch.nn.Module):
    """(decoder_input_ids (B, 1), position_ids (B, 1), [encoder_attention_mask], past_key.0, ...,
    cross_key.0, ...) -> (logits,). Every row is at the same position (they all start at the start token)."""

    def __init__(self, model: torch.nn.Module, encoder_mask: bool):
        super().__init__()
        self.model = model
        self.encoder_mask = encoder_mask
        self.layers = decoder_layer_count(model.config)
        # Whisper numbers its decoder positions itself unless given them; T5 has relative positions only.
        self.position_keyword = "decoder_position_ids" if "decoder_position_ids" in inspect.signature(model.forward).parameters else None

    def forward(self, decoder_input_ids: torch.Tensor, position_ids: torch.Tensor, *rest: torch.Tensor) -> tuple[torch.Tensor]:
        encoder_mask, caches = (rest[0], rest[1:]) if self.encoder_mask else (None, rest)
        past, cross = caches[: 2 * self.layers], caches[2 * self.layers:]
        batch, length = decoder_input_ids.shape[0], past[0].shape[2]
        slots = torch.arange(length, device=decoder_input_ids.device).view(1, 1, length)
        mask = additive_mask(slots <= position_ids.view(batch, 1, 1))
        source_length = int(cross[0].shape[2])
        cache = EncoderDecoderCache(
            SlotCache(_writing_layers(past, position_ids, position_ids[0, 0])),
            SlotCache([SlotLayer(cross[i], cross[i + 1], seen=source_length) for i in range(0, len(cross), 2)]),
        )
        keywords: dict[str, Any] = {}
        if encoder_mask is not None:
            keywords["attention_mask"] = additive_mask(encoder_mask.bool().unsqueeze(1))
        if self.position_keyword:
            keywords[self.position_keyword] = position_ids
        # The encoder output is only read through the cross-attention caches: a placeholder of its length.
        placeholder = torch.zeros(batch, source_length, 1, device=decoder_input_ids.device)
        logits = self.model(encoder_outputs=(placeholder,), decoder_input_ids=decoder_input_ids, decoder_attention_mask=mask,
                            cache=cache, use_cache=True, **keywords).logits
        return (logits[:, -1],)
