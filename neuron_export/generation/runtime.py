"""The compiled graphs of a generative artifact, driven one step at a time.

DecoderRuntime: the prompt runs through the smallest prompt graph that holds it (right-padded),
its keys and values go into the decode graph's state, then each step feeds one token per row at
that row's own position. EncoderDecoderRuntime: the encoder's cross-attention keys and values go
into the decoder graph's state, then the decoder runs one token at a time from position 0.

Every limit of the static shapes is checked here, before a graph runs, and named in the error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from ..artifact import CompiledModel, inside, load_artifact
from ..errors import ArtifactError, InputMismatchError

PREFILL = "prefill"  # prompt graph folders: prefill_<length>
DECODE, ENCODER, DECODER = "decode", "encoder", "decoder"


def prefill_component(length: int) -> str:
    return f"{PREFILL}_{length}"


def _component(folder: Path, name: str) -> CompiledModel:
    path = inside(folder, name)
    if not path.is_dir():
        raise ArtifactError(f"{folder} is incomplete: its {name} graph is missing")
    return load_artifact(path)


def _pad_rows(tensor: torch.Tensor, rows: int) -> torch.Tensor:
    """Fill the compiled batch by repeating the first row (its results are dropped)."""
    short = rows - tensor.shape[0]
    return torch.cat([tensor, tensor[:1].expand(short, *tensor.shape[1:])]) if short else tensor


class DecoderRuntime:
    """A decoder LM's prompt graph(s) and decode graph, sharing the decode graph's KV cache."""

    def __init__(self, prefills: Sequence[CompiledModel], decode: CompiledModel, pad_token_id: int):
        self.prefills = sorted(prefills, key=lambda model: model.inputs["input_ids"].shape[1])
        self.decode = decode
        self.pad_token_id = pad_token_id
        self.batch_size = decode.batch_size
        self.cache_length = int(decode.state_specs[0].shape[2])
        self.prompt_lengths = [int(model.inputs["input_ids"].shape[1]) for model in self.prefills]
        self.positions = torch.zeros(self.batch_size, dtype=torch.long)

    @classmethod
    def load(cls, folder: Path, components: Sequence[str], pad_token_id: int) -> "DecoderRuntime":
        prefills = [_component(folder, name) for name in components if name.startswith(PREFILL)]
        if not prefills:
            raise ArtifactError(f"{folder} has no prompt graph ({PREFILL}_<length>)")
        return cls(prefills, _component(folder, DECODE), pad_token_id)

    def check_room(self, prompt_lengths: Sequence[int], max_new_tokens: int) -> None:
        """Refuse what the compiled shapes cannot hold, naming the limit."""
        if len(prompt_lengths) > self.batch_size:
            raise InputMismatchError(f"{len(prompt_lengths)} prompts: the model was compiled for batch_size {self.batch_size}")
        longest = max(prompt_lengths)
        if longest == 0:
            raise InputMismatchError("a prompt is empty: give at least one token")
        if longest > self.prompt_lengths[-1]:
            raise InputMismatchError(
                f"the prompt has {longest} tokens; the compiled prompt graph takes at most {self.prompt_lengths[-1]} "
                "(export with a larger --sequence_length)"
            )
        if longest + max_new_tokens > self.cache_length:
            raise InputMismatchError(
                f"a prompt of {longest} tokens + max_new_tokens {max_new_tokens} = {longest + max_new_tokens} tokens: "
                f"the model was compiled for sequence_length {self.cache_length} (its KV cache); shorten the prompt, "
                "lower max_new_tokens or export with a larger --sequence_length"
            )

    def start(self, rows: Sequence[Sequence[int]]) -> torch.Tensor:
        """Run the prompts (token lists, one per row) and load their KV cache; the next-token logits (rows, V)."""
        length = next(size for size in self.prompt_lengths if size >= max(map(len, rows)))
        prefill = self.prefills[self.prompt_lengths.index(length)]
        ids = torch.full((len(rows), length), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for index, row in enumerate(rows):
            ids[index, : len(row)] = torch.tensor(row, dtype=torch.long)
            mask[index, : len(row)] = 1
        outputs = prefill(input_ids=_pad_rows(ids, self.batch_size), attention_mask=_pad_rows(mask, self.batch_size))
        self.decode.write_state({spec.name: outputs[spec.name] for spec in self.decode.state_specs})
        self.positions = _pad_rows(torch.tensor([len(row) for row in rows]), self.batch_size).clone()
        return outputs["logits"][: len(rows)]

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed one token per row at its next position; the next-token logits."""
        if int(self.positions.max()) >= self.cache_length:
            raise InputMismatchError(f"the KV cache is full: the model was compiled for sequence_length {self.cache_length}")
        ids = _pad_rows(tokens.view(-1, 1).long(), self.batch_size)
        logits = self.decode(input_ids=ids, position_ids=self.positions.view(-1, 1))["logits"]
        self.positions += 1
        return logits[: tokens.shape[0]]


class EncoderDecoderRuntime:
    """An encoder-decoder's encoder graph and decoder graph (cross-attention keys / values as state)."""

    def __init__(self, encoder: CompiledModel, decoder: CompiledModel, pad_values: dict[str, int]):
        self.encoder = encoder
        self.decoder = decoder
        self.pad_values = pad_values
        self.batch_size = decoder.batch_size
        self.cache_length = int(decoder.state_specs[0].shape[2])
        self.position = 0
        self.rows = 0
        self.encoder_mask = None

    @classmethod
    def load(cls, folder: Path, pad_values: dict[str, int]) -> "EncoderDecoderRuntime":
        return cls(_component(folder, ENCODER), _component(folder, DECODER), pad_values)

    def check_room(self, rows: int, decoder_tokens: int) -> None:
        if rows > self.batch_size:
            raise InputMismatchError(f"{rows} inputs: the model was compiled for batch_size {self.batch_size}")
        if decoder_tokens > self.cache_length:
            raise InputMismatchError(
                f"{decoder_tokens} decoder tokens (decoder prompt + max_new_tokens): the model was compiled for "
                f"sequence_length {self.cache_length} (its decoder KV cache); lower max_new_tokens or export with a larger --sequence_length"
            )

    def start(self, inputs: dict[str, torch.Tensor]) -> None:
        """Encode the inputs (padded to the compiled shape) and load the decoder's cross-attention state."""
        padded = {}
        for name, spec in self.encoder.inputs.items():
            if name not in inputs:
                raise InputMismatchError(f"missing input {name!r}; the encoder takes {', '.join(self.encoder.inputs)}")
            tensor = inputs[name]
            self.rows = tensor.shape[0]
            if tensor.dim() == 2 and tensor.shape[1] > spec.shape[1]:
                raise InputMismatchError(f"the input has {tensor.shape[1]} tokens; the encoder was compiled for sequence_length "
                                         f"{spec.shape[1]} (export with a larger --sequence_length)")
            if tensor.dim() == 2:  # token ids and masks: pad the sequence
                wide = tensor.new_full((tensor.shape[0], spec.shape[1]), self.pad_values.get(name, 0))
                wide[:, : tensor.shape[1]] = tensor
                tensor = wide
            elif tuple(tensor.shape[1:]) != tuple(spec.shape[1:]):
                raise InputMismatchError(f"input {name!r} has shape {tuple(tensor.shape)}; the encoder was compiled for {tuple(spec.shape)}")
            padded[name] = _pad_rows(tensor, self.batch_size)
        outputs = self.encoder(**padded)
        self.decoder.write_state({name: outputs[name] for name in self.encoder.output_names})
        self.encoder_mask = padded.get("attention_mask")
        self.position = 0

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.position >= self.cache_length:
            raise InputMismatchError(f"the decoder KV cache is full: the model was compiled for sequence_length {self.cache_length}")
        inputs = {"decoder_input_ids": _pad_rows(tokens.view(-1, 1).long(), self.batch_size),
                  "position_ids": torch.full((self.batch_size, 1), self.position, dtype=torch.long)}
        if "encoder_attention_mask" in self.decoder.inputs:
            inputs["encoder_attention_mask"] = self.encoder_mask
        self.position += 1
        return self.decoder(**inputs)["logits"][: tokens.shape[0]]
