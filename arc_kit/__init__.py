"""arc-kit: turn a Tiny Recursive Model checkpoint into a valid, high-scoring ARC submission."""

__version__ = "0.2.0"
