"""The client dialects other than OpenAI's: each module maps its requests to the canonical
form (an OpenAI chat request) and the canonical answers (OpenAI objects, whole or streamed)
back to its own shapes, errors included. Pure functions and state machines: no I/O, no
routing (the inbound adapters in ``nexusd.api.inbound`` wire them to the gateway)."""
