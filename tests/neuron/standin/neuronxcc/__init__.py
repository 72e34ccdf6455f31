"""Stand-in for the Neuron compiler's Python package (tests only, never shipped); the driver is neuronxcc.driver."""

import importlib.metadata

__version__ = importlib.metadata.version("neuronx-cc")
