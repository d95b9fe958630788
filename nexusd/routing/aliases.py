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


def alias_chain(aliases: Mapping[str, str], start: str) -> list[str]:
    """Every name from ``start`` to the end of its aliases; a cycle ends with the repeated
    name (so ``chain[-1] in chain[:-1]``). The one walk the daemon, the control API and the TUI
    share."""
    chain = [start]
    current = start
    while current in aliases:
        current = aliases[current]
        chain.append(current)
        if current in chain[:-1]:
            break
    return chain


def is_cycle(chain: list[str]) -> bool:
    return chain[-1] in chain[:-1]


def check_aliases(aliases: Mapping[str, str]) -> list[str]:
    """Raise AliasCycleError naming the first cycle; return warnings for chains cut at 3 hops."""
    warnings: list[str] = []
    for start in aliases:
        chain = alias_chain(aliases, start)
        if is_cycle(chain):
            raise AliasCycleError(chain[chain.index(chain[-1]) :])
        if len(chain) - 1 > MAX_ALIAS_HOPS:
            warnings.append(
                f"alias chain {' → '.join(chain)} is longer than {MAX_ALIAS_HOPS} hops; "
                f"'{start}' resolves to '{chain[MAX_ALIAS_HOPS]}'"
            )
    return warnings


def resolve_alias(aliases: Mapping[str, str], model: str) -> tuple[str, list[str]]:
    """Follow at most three hops; returns (resolved name, names visited after the first)."""
    if model not in aliases:  # the common case: no alias, no list
        return model, []
    chain = alias_chain(aliases, model)[: MAX_ALIAS_HOPS + 1]
    return chain[-1], chain[1:]
