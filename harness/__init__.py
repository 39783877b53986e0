"""litert-bench: convert LLMs with litert-torch, run them with a native LiteRT runner, record and report."""

__version__ = "0.1.0"
