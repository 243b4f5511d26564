"""Names -> files on disk -> tensors -> nn.Modules: the Hub, nanobark's cache, the converter and the loaders.

hub.py          a model name or folder -> a converted folder (downloads and converts once, offline-aware)
checkpoint.py   a converted folder -> checked, loaded modules
convert/        transformers' or Suno's checkpoints -> nanobark's safetensors layout
"""
