"""Quality lab: a procedural world with known ground truth and a tiny SD-like model trained on it."""
