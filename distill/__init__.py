"""The SiD-LSG trainer (``sidbench distill``): config, guidance, loss, EMA, counter-based randomness,
atomic checkpoints, trackers and the training loop."""
