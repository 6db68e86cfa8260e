"""The recursive model: TRM layers and network, loss, optimisers, trainer, training data, checkpoints."""
