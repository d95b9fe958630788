"""What a cloud answer cost: a built-in price table, overridable per model in TOML.

Prices are USD per 1M tokens, as the providers publish them, taken on ``PRICES_AS_OF``;
``[pricing."model"]`` overrides or adds an entry. A model id matches its entry exactly, or
by the longest entry that is a prefix of it at a ``-`` boundary, so dated and suffixed ids
(``gpt-4o-2024-08-06``, ``claude-sonnet-4-20250514``, ``gemini-2.5-flash-preview-05-20``) take
their family's price while ``gpt-4o-mini`` keeps its own.

Only cloud backends are charged: a local server is free whatever its model is called. A
cloud model without a price costs ``unknown`` (never a silent 0), which the budget treats
conservatively. Cost comes from the provider's own usage; without it (a stream cut before
its usage arrived) it is estimated from the counted prompt and marked so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from nexusd.config.schema import ModelPrice

if TYPE_CHECKING:
    from nexusd.routing.decisions import RequestTrace

PRICES_AS_OF = "2025-08-01"
PER = 1_000_000


@dataclass(slots=True, frozen=True)
class Price:
    input: float
    output: float
    cached_input: float | None = None

    def cost(self, prompt: int, completion: int, cached: int = 0) -> float:
        """``prompt`` includes ``cached`` (OpenAI's convention, which every codec follows)."""
        cached = min(max(cached, 0), prompt)
        cached_price = self.input if self.cached_input is None else self.cached_input
        return (
            (prompt - cached) * self.input + cached * cached_price + completion * self.output
        ) / PER


def _p(input_: float, output: float, cached: float | None = None) -> Price:
    return Price(input_, output, cached)


#: USD per 1M tokens (input, output, cached input), from the providers' price pages
BUILTIN: dict[str, Price] = {
    # OpenAI
    "gpt-5": _p(1.25, 10.00, 0.125),
    "gpt-5-mini": _p(0.25, 2.00, 0.025),
    "gpt-5-nano": _p(0.05, 0.40, 0.005),
    "gpt-4.1": _p(2.00, 8.00, 0.50),
    "gpt-4.1-mini": _p(0.40, 1.60, 0.10),
    "gpt-4.1-nano": _p(0.10, 0.40, 0.025),
    "gpt-4o": _p(2.50, 10.00, 1.25),
    "gpt-4o-mini": _p(0.15, 0.60, 0.075),
    "o1": _p(15.00, 60.00, 7.50),
    "o1-mini": _p(1.10, 4.40, 0.55),
    "o3": _p(2.00, 8.00, 0.50),
    "o3-mini": _p(1.10, 4.40, 0.55),
    "o4-mini": _p(1.10, 4.40, 0.275),
    "gpt-4-turbo": _p(10.00, 30.00),
    "gpt-4": _p(30.00, 60.00),
    "gpt-3.5-turbo": _p(0.50, 1.50),
    "text-embedding-3-small": _p(0.02, 0.0),
    "text-embedding-3-large": _p(0.13, 0.0),
    "text-embedding-ada-002": _p(0.10, 0.0),
    # Anthropic (cached input = cache reads; cache writes are billed as input here)
    "claude-opus-4-1": _p(15.00, 75.00, 1.50),
    "claude-opus-4": _p(15.00, 75.00, 1.50),
    "claude-sonnet-4-5": _p(3.00, 15.00, 0.30),
    "claude-sonnet-4": _p(3.00, 15.00, 0.30),
    "claude-3-7-sonnet": _p(3.00, 15.00, 0.30),
    "claude-3-5-sonnet": _p(3.00, 15.00, 0.30),
    "claude-3-5-haiku": _p(0.80, 4.00, 0.08),
    "claude-3-opus": _p(15.00, 75.00, 1.50),
    "claude-3-sonnet": _p(3.00, 15.00, 0.30),
    "claude-3-haiku": _p(0.25, 1.25, 0.03),
    # Google (prompts up to 200k tokens for 2.5 Pro, 128k for 1.5)
    "gemini-2.5-pro": _p(1.25, 10.00, 0.31),
    "gemini-2.5-flash": _p(0.30, 2.50, 0.075),
    "gemini-2.5-flash-lite": _p(0.10, 0.40, 0.025),
    "gemini-2.0-flash": _p(0.10, 0.40, 0.025),
    "gemini-2.0-flash-lite": _p(0.075, 0.30),
    "gemini-1.5-pro": _p(1.25, 5.00, 0.3125),
    "gemini-1.5-flash": _p(0.075, 0.30, 0.01875),
    "gemini-1.5-flash-8b": _p(0.0375, 0.15, 0.01),
}

#: model ids remembered (hit or miss) at most; the table is small, client model names are not
CACHE_SIZE = 4096


class PriceBook:
    """The built-in table with the config's ``[pricing]`` on top; one per config."""

    def __init__(self, overrides: dict[str, ModelPrice] | None = None) -> None:
        self.table = dict(BUILTIN)
        for model, price in (overrides or {}).items():
            self.table[model] = Price(price.input, price.output, price.cached_input)
        self._cache: dict[str, Price | None] = {}

    def price(self, model: str) -> Price | None:
        try:
            return self._cache[model]
        except KeyError:
            pass
        found = self._find(model)
        if len(self._cache) >= CACHE_SIZE:
            self._cache.clear()
        self._cache[model] = found
        return found

    def _find(self, model: str) -> Price | None:
        name = model.removeprefix("models/")
        if name in self.table:
            return self.table[name]
        best: str | None = None
        for entry in self.table:
            if name.startswith(entry + "-") and (best is None or len(entry) > len(best)):
                best = entry
        return None if best is None else self.table[best]

    def settle(self, trace: RequestTrace) -> None:
        """The cost of a finished request, on its trace: ``free`` on a local backend,
        ``exact`` from the provider's usage, ``estimated`` from the counted prompt when the
        usage never came, ``unknown`` for an unpriced cloud model."""
        if trace.backend_type is None or trace.served_model is None:
            return
        if trace.backend_type != "cloud":
            trace.cost_usd, trace.cost_status = 0.0, "free"
            return
        if trace.outcome == "passed_through":  # a provider's 4xx: nothing was generated
            trace.cost_usd, trace.cost_status = 0.0, "exact"
            return
        price = self.price(trace.served_model)
        if price is None:
            trace.cost_usd, trace.cost_status = None, "unknown"
        elif trace.prompt_tokens is not None or trace.completion_tokens is not None:
            trace.cost_usd = price.cost(
                trace.prompt_tokens or 0, trace.completion_tokens or 0, trace.cached_tokens or 0
            )
            trace.cost_status = "exact"
        else:
            trace.cost_usd = price.cost(trace.requirements.prompt_tokens, 0)
            trace.cost_status = "estimated"

    def estimate(self, model: str, prompt_tokens: int) -> float | None:
        """Before the answer (a stream's header): the prompt's cost, a lower bound."""
        price = self.price(model)
        return None if price is None else price.cost(prompt_tokens, 0)


def format_cost(cost: float | None) -> str:
    """``X-Nexus-Cost-Estimated``: USD with 6 decimals (a short answer costs fractions of a
    cent), or ``unknown``."""
    return "unknown" if cost is None else f"{cost:.6f}"
