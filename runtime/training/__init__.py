"""Training: the run folder, the loop, checkpoints, metrics, distributed set-up."""
