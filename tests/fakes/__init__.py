"""Fake inference backends speaking the real wire protocols, with injectable faults.

Local servers (Ollama, vLLM, llama.cpp, LM Studio, exo) and the cloud APIs (OpenAI,
Anthropic, Google Gemini). Use `FakeBackend` inside async tests, `FakeHost` from sync tests,
or run one standalone: `python -m tests.fakes ollama --model llama3:8b`,
`python -m tests.fakes anthropic --api-key sk-ant-test`.
"""

from .host import FakeHost
from .server import ALL_KINDS, CLOUD_KINDS, KINDS, NATIVE_CLOUD_KINDS, FakeBackend
from .state import FakeModel, Faults, RecordedRequest

__all__ = [
    "ALL_KINDS",
    "CLOUD_KINDS",
    "KINDS",
    "NATIVE_CLOUD_KINDS",
    "FakeBackend",
    "FakeHost",
    "FakeModel",
    "Faults",
    "RecordedRequest",
]
