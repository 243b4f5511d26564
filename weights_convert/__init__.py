"""Turn Bark checkpoints (transformers' Hub layout or Suno's original .pt files) into nanobark's layout."""
