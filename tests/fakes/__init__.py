"""Fake inference backends speaking the real wire protocols, with injectable faults.

Use `FakeBackend` inside async tests, `FakeHost` from sync tests, or run one standalone:
`python -m tests.fakes ollama --model llama3:8b`.
"""

from .host import FakeHost
from .server import KINDS, FakeBackend
from .state import FakeModel, Faults, RecordedRequest

__all__ = ["KINDS", "FakeBackend", "FakeHost", "FakeModel", "Faults", "RecordedRequest"]
