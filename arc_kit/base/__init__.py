"""The base layer: the one-line error contract, atomic files, the config loader, progress output."""
