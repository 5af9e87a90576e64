"""The training loop, its checkpoints and distributed training (torchrun)."""
