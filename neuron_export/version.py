"""The tool's version, written into every manifest and compile cache key."""

__version__ = "0.1.0"
