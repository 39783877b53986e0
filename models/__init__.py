"""Model families reauthored on litert-torch's generative layers, each with a full and a tiny config.

Import direction, with no cycle: spec ← families ← registry; spec ← hf_reference ← checkpoint ← weights.
- spec.py: Family and ModelSpec (what a model is), sizes, the config digest, FLOP/parameter profile.
- families/: one file per family (families/llama_style.py: the shared Llama-shaped mapping).
- registry.py: name → Family, and get_spec.
- hf_reference.py: the `transformers` model a family is reauthored from.
- checkpoint.py: checks of a local HF checkpoint's tensors against that reference.
- weights.py: the reauthored torch module with weights in it (a checkpoint, or seeded random ones).
"""
