"""workbench: decide between fine-tuning, RAG or both on your own corpus."""

__version__ = "0.1.0"
