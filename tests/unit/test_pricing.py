"""The price table: matching, the cost formula, overrides, and what a record is charged."""

from __future__ import annotations

import pytest

from nexusd.config.schema import ModelPrice
from nexusd.pricing import BUILTIN, PriceBook, format_cost
from nexusd.routing.decisions import RequestTrace
from nexusd.routing.intent import Requirements
from nexusd.types import Endpoint


@pytest.mark.parametrize(
    ("model", "entry"),
    [
        ("gpt-4o", "gpt-4o"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-mini", "gpt-4o-mini"),  # its own price, not gpt-4o's
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4-0613", "gpt-4"),
        ("gpt-4-turbo-2024-04-09", "gpt-4-turbo"),
        ("gpt-4.1-nano", "gpt-4.1-nano"),
        ("claude-sonnet-4-20250514", "claude-sonnet-4"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-3-5-haiku-20241022", "claude-3-5-haiku"),
        ("claude-3-haiku-20240307", "claude-3-haiku"),
        ("gemini-2.5-flash-lite", "gemini-2.5-flash-lite"),
        ("gemini-2.5-flash-preview-05-20", "gemini-2.5-flash"),
        ("models/gemini-1.5-pro", "gemini-1.5-pro"),
    ],
)
def test_a_model_takes_its_longest_family_price(model: str, entry: str) -> None:
    assert PriceBook().price(model) == BUILTIN[entry]


@pytest.mark.parametrize("model", ["gpt-4.5-preview", "llama3:8b", "gpt", "claude", "o3x", ""])
def test_no_price_without_a_match_at_a_dash(model: str) -> None:
    assert PriceBook().price(model) is None


def test_the_cost_formula_with_cached_prompt_tokens() -> None:
    price = PriceBook().price("gpt-4o")
    assert price is not None
    # 1M prompt (400k from cache) + 100k completion: 0.6 × 2.50 + 0.4 × 1.25 + 0.1 × 10
    assert price.cost(1_000_000, 100_000, 400_000) == pytest.approx(1.5 + 0.5 + 1.0)
    assert price.cost(1000, 500) == pytest.approx((1000 * 2.5 + 500 * 10) / 1e6)
    assert price.cost(0, 0) == 0.0
    # cached beyond the prompt is capped; a provider's nonsense never makes a negative cost
    assert price.cost(10, 0, 50) == pytest.approx(10 * 1.25 / 1e6)


def test_an_override_replaces_and_adds_and_cached_defaults_to_input() -> None:
    book = PriceBook({"gpt-4o": ModelPrice(1.0, 2.0), "my-model": ModelPrice(5.0, 6.0, 0.5)})
    gpt = book.price("gpt-4o-2024-08-06")
    assert gpt is not None and (gpt.input, gpt.output, gpt.cached_input) == (1.0, 2.0, None)
    assert gpt.cost(100, 0, 100) == pytest.approx(100 * 1.0 / 1e6)
    mine = book.price("my-model")
    assert mine is not None and mine.cost(100, 10, 50) == pytest.approx(
        (50 * 5.0 + 50 * 0.5 + 10 * 6.0) / 1e6
    )
    assert PriceBook().price("gpt-4o") == BUILTIN["gpt-4o"]  # the table itself is untouched


def trace(kind: str | None, model: str | None, prompt: int | None, completion: int | None):
    t = RequestTrace("r", model or "", model or "", [], Requirements(Endpoint.CHAT), False)
    t.backend_type, t.served_model = kind, model
    t.prompt_tokens, t.completion_tokens = prompt, completion
    t.requirements.prompt_tokens = 40
    return t


@pytest.mark.parametrize(
    ("kind", "model", "prompt", "completion", "cost", "status"),
    [
        ("cloud", "claude-3-haiku-20240307", 1000, 500, (1000 * 0.25 + 500 * 1.25) / 1e6, "exact"),
        ("cloud", "claude-3-haiku-20240307", None, None, 40 * 0.25 / 1e6, "estimated"),
        ("cloud", "secret-model", 1000, 500, None, "unknown"),
        ("local", "gpt-4o", 1000, 500, 0.0, "free"),  # a local server is free, whatever the name
        (None, None, None, None, None, None),  # nothing served
    ],
)
def test_settle_charges_what_the_request_cost(kind, model, prompt, completion, cost, status):
    t = trace(kind, model, prompt, completion)
    PriceBook().settle(t)
    assert t.cost_status == status
    assert t.cost_usd == (None if cost is None else pytest.approx(cost))


def test_the_header_shows_six_decimals_or_unknown() -> None:
    assert format_cost(0.000123456) == "0.000123"
    assert format_cost(None) == "unknown"
    assert format_cost(0.0) == "0.000000"
