"""nexusd — the Nexus daemon: one OpenAI-compatible endpoint in front of many inference backends.

Kept import-light on purpose: the CLIs import ``nexusd.__version__`` and must start fast.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
