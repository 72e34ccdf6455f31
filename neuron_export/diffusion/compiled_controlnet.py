"""A compiled ControlNet in the place of diffusers' ControlNetModel.

diffusers' ControlNet pipelines accept only a ControlNetModel or a MultiControlNetModel of them (their
checks use isinstance), so the adapter is a ControlNetModel whose modules were never built: it holds the
compiled model and the ControlNet's config, and its forward runs the compiled model. Several are a
MultiControlNetModel whose device and dtype are the compiled nets' (diffusers reads them from parameters,
which compiled models have none of).
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import ControlNetModel, MultiControlNetModel
from diffusers.configuration_utils import FrozenDict

from ..artifact import CompiledModel
from ..errors import NeuronExportError
from .adapters import RunsCompiled, added_conditions, run_at_compiled_batch, timestep_per_row
from .controlnet import DOWN_OUTPUT, MID_OUTPUT


def compiled_controlnets(nets: list["CompiledControlNet"]):
    """What a ControlNet pipeline takes as its controlnet: the one compiled ControlNet, or several summed by diffusers."""
    return nets[0] if len(nets) == 1 else CompiledMultiControlNet(nets)


class CompiledMultiControlNet(MultiControlNetModel):
    @property
    def device(self) -> torch.device:
        return self.nets[0].device

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32


class CompiledControlNet(RunsCompiled, ControlNetModel):
    def __init__(self, compiled: CompiledModel, config: Any):  # not ControlNetModel.__init__: nothing to build
        torch.nn.Module.__init__(self)
        self.compiled = compiled
        self._internal_dict = FrozenDict(config)
        self.added_condition_names = [n for n in compiled.input_names if n in ("text_embeds", "time_ids")]
        self.down_outputs = sorted((n for n in compiled.output_names if n.startswith(DOWN_OUTPUT)), key=lambda n: int(n.rsplit(".", 1)[1]))

    def forward(self, sample, timestep, encoder_hidden_states, controlnet_cond, conditioning_scale=1.0, class_labels=None,
                timestep_cond=None, attention_mask=None, added_cond_kwargs=None, cross_attention_kwargs=None,
                guess_mode=False, return_dict=True):
        from diffusers.models.controlnets.controlnet import ControlNetOutput

        if guess_mode:
            raise NeuronExportError("the compiled ControlNet runs without guess mode (its residuals are not rescaled per block)")
        if any(v is not None for v in (class_labels, timestep_cond, attention_mask)) or cross_attention_kwargs:
            raise NeuronExportError("the compiled ControlNet takes no class_labels, timestep_cond, attention_mask or cross_attention_kwargs")
        rows = sample.shape[0]
        scale = torch.as_tensor(conditioning_scale, dtype=torch.float32, device=sample.device).reshape(-1)
        inputs = {
            "sample": sample, "timestep": timestep_per_row(timestep, sample), "encoder_hidden_states": encoder_hidden_states,
            "controlnet_cond": controlnet_cond, "conditioning_scale": scale.expand(rows).contiguous() if scale.numel() == 1 else scale,
            **added_conditions(self.added_condition_names, added_cond_kwargs, "ControlNet"),
        }
        outputs = run_at_compiled_batch(self.compiled, inputs)
        down, mid = tuple(outputs[name] for name in self.down_outputs), outputs[MID_OUTPUT]
        return ControlNetOutput(down_block_res_samples=down, mid_block_res_sample=mid) if return_dict else (down, mid)
