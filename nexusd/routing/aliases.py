"""Model aliases: at most three hops, cycles refused when they are configured or edited (F07)."""

from __future__ import annotations

from collections.abc import Mapping

MAX_ALIAS_HOPS = 3


class AliasCycleError(ValueError):
    def __init__(self, cycle: list[str]) -> None:
        self.cycle = cycle
        super().__init__(
            f"circular alias detected: {' → '.join(repr(n) for n in cycle)}; "
            "remove one of these aliases"
        )


def check_aliases(aliases: Mapping[str, str]) -> list[str]:
    """Raise AliasCycleError naming the first cycle; return warnings for chains cut at 3 hops."""
    warnings: list[str] = []
    for start in aliases:
        chain = [start]
        current = start
        while current in aliases:
            current = aliases[current]
            if current in chain:
                raise AliasCycleError([*chain[chain.index(current) :], current])
            chain.append(current)
        if len(chain) - 1 > MAX_ALIAS_HOPS:
            warnings.append(
                f"alias chain {' → '.join(chain)} is longer than {MAX_ALIAS_HOPS} hops; "
                f"'{start}' resolves to '{chain[MAX_ALIAS_HOPS]}'"
            )
    return warnings


def resolve_alias(aliases: Mapping[str, str], model: str) -> tuple[str, list[str]]:
    """Follow at most three hops; returns (resolved name, names visited after the first)."""
    hops: list[str] = []
    current = model
    while len(hops) < MAX_ALIAS_HOPS:
        target = aliases.get(current)
        if target is None:
            break
        hops.append(target)
        current = target
    return current, hops
