"""preftune: align causal language models with preference data and compare the methods."""

__version__ = "0.1.0"
