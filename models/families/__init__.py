"""One file per model family, each exporting a `Family` (its HF config dicts, the mapping to litert-torch's
ModelConfig and its checkpoint tensor names); llama_style.py holds the mapping the Llama-shaped ones share.
models/registry.py lists them by name."""
