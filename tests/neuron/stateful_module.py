"""A module with a state tensor for the input_output_aliases tests of the stand-in (in-process and on the inf2 host)."""

import torch


class Accumulator(torch.nn.Module):
    """A state tensor (a parameter, as torch-neuronx requires of alias keys) that each call adds to; output 1 is its new value."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(3, 3)
        self.total = torch.nn.ParameterList([torch.nn.Parameter(torch.zeros(3), requires_grad=False)])

    def forward(self, x):
        total = self.total[0] + self.linear(x)
        return total.sum().reshape(1), total
