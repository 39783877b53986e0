"""Model families reauthored on litert-torch's generative layers, each with a full and a tiny config."""
