"""Model aliases (F07): at most three hops, cycles refused with the cycle named."""

from __future__ import annotations

import itertools

import pytest

from nexusd.routing.aliases import MAX_ALIAS_HOPS, AliasCycleError, check_aliases, resolve_alias


@pytest.mark.parametrize(
    ("aliases", "resolved", "hops"),
    [
        ({}, "a", []),
        ({"x": "y"}, "a", []),
        ({"a": "b"}, "b", ["b"]),
        ({"a": "b", "b": "c"}, "c", ["b", "c"]),
        ({"a": "b", "b": "c", "c": "d"}, "d", ["b", "c", "d"]),
    ],
    ids=["no-aliases", "unrelated", "1-hop", "2-hops", "3-hops"],
)
def test_resolve_follows_up_to_three_hops(
    aliases: dict[str, str], resolved: str, hops: list[str]
) -> None:
    assert resolve_alias(aliases, "a") == (resolved, hops)


def test_four_hop_chain_stops_after_three_hops() -> None:
    aliases = {"a": "b", "b": "c", "c": "d", "d": "e"}
    assert MAX_ALIAS_HOPS == 3
    assert resolve_alias(aliases, "a") == ("d", ["b", "c", "d"])
    # starting further down the chain, the rest fits in three hops
    assert resolve_alias(aliases, "b") == ("e", ["c", "d", "e"])


def test_resolution_is_exact_and_case_sensitive() -> None:
    aliases = {"GPT-4": "llama3:70b"}
    assert resolve_alias(aliases, "gpt-4") == ("gpt-4", [])
    assert resolve_alias(aliases, "GPT-4") == ("llama3:70b", ["llama3:70b"])


def test_runtime_cap_terminates_even_on_a_cycle() -> None:
    # validation refuses cycles; resolution must still terminate if one slipped through
    assert resolve_alias({"a": "b", "b": "c", "c": "a"}, "a") == ("a", ["b", "c", "a"])
    assert resolve_alias({"a": "a"}, "a") == ("a", ["a"])  # the walk stops at the repeat


@pytest.mark.parametrize(
    ("aliases", "cycle"),
    [
        ({"a": "a"}, ["a", "a"]),
        ({"a": "b", "b": "a"}, ["a", "b", "a"]),
        ({"a": "b", "b": "c", "c": "a"}, ["a", "b", "c", "a"]),
    ],
    ids=["self", "two", "three"],
)
def test_cycles_raise_naming_the_cycle(aliases: dict[str, str], cycle: list[str]) -> None:
    with pytest.raises(AliasCycleError) as info:
        check_aliases(aliases)
    assert info.value.cycle == cycle
    message = str(info.value)
    assert " → ".join(f"'{name}'" for name in cycle) in message
    assert "circular alias" in message


def test_cycle_reached_through_a_tail_names_only_the_cycle() -> None:
    with pytest.raises(AliasCycleError) as info:
        check_aliases({"entry": "a", "a": "b", "b": "a"})
    assert info.value.cycle == ["a", "b", "a"]
    assert "entry" not in str(info.value)


def test_cycle_after_valid_aliases_is_found() -> None:
    with pytest.raises(AliasCycleError) as info:
        check_aliases({"x": "y", "p": "q", "q": "p"})
    assert info.value.cycle == ["p", "q", "p"]


def test_alias_cycle_error_is_a_value_error() -> None:
    assert issubclass(AliasCycleError, ValueError)


@pytest.mark.parametrize(
    "aliases",
    [
        {},
        {"a": "b"},
        {"a": "b", "b": "c", "c": "d"},
        {"gpt-4": "llama3:70b", "gpt-4-turbo": "llama3:70b", "best": "gpt-4"},
    ],
    ids=["empty", "one", "three-hops", "shared-target"],
)
def test_valid_aliases_have_no_warnings(aliases: dict[str, str]) -> None:
    assert check_aliases(aliases) == []


def test_long_acyclic_chain_is_valid_but_warns() -> None:
    warnings = check_aliases({"a": "b", "b": "c", "c": "d", "d": "e"})
    assert len(warnings) == 1
    assert "a → b → c → d → e" in warnings[0]
    assert "'a' resolves to 'd'" in warnings[0]


def test_very_long_chain_warns_for_each_start_beyond_three_hops() -> None:
    names = [f"m{i}" for i in range(7)]  # m0 → … → m6: six hops from m0
    aliases = dict(itertools.pairwise(names))
    warnings = check_aliases(aliases)
    # starts m0, m1, m2 are more than three hops from m6
    assert len(warnings) == 3
    assert "'m0' resolves to 'm3'" in warnings[0]
