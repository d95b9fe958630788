"""A backend agent is three narrow parts (design §2): the transport moves bytes, the codec
speaks the backend's dialect, the prober learns health, models and capabilities.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nexusd.backends.codec import OpenAICodec
    from nexusd.backends.prober import Prober, ProbeResult
    from nexusd.backends.transport import Transport


@dataclass(slots=True)
class BackendAgent:
    transport: Transport
    codec: OpenAICodec
    prober: Prober

    async def probe(self, timeout: float) -> ProbeResult:
        return await self.prober.probe(timeout)
