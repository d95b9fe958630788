"""Render a routing story (``POST /v1/route`` or ``GET /v1/requests/{id}``) as Rich text:
the outcome, what was asked for, each pipeline step with its candidates and every
exclusion (stage and reason), and the attempts that were made."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from nexus_tui.widgets.cells import tone

OUTCOME_TONE = {
    "route": "good",
    "ok": "good",
    "queue": "warn",
    "reject": "bad",
    "not_found": "bad",
    "error": "bad",
    "failed": "bad",
    "passed_through": "warn",
}


def outcome_style(outcome: str) -> str:
    return f"bold {tone(OUTCOME_TONE.get(outcome, ''))}".strip()


def _needs(req: dict[str, Any]) -> str:
    parts = [name for name in ("vision", "tools") if req.get(name)]
    if req.get("json_mode"):
        parts.append("JSON mode")
    if req.get("prompt_tokens"):
        parts.append(f"{req['prompt_tokens']} prompt tokens")
    if req.get("max_tokens"):
        parts.append(f"max {req['max_tokens']} tokens")
    return ", ".join(parts) or "nothing special"


def explain(data: dict[str, Any]) -> RenderableType:
    """Works for both shapes; unknown fields are ignored, missing ones skipped."""
    parts: list[RenderableType] = []
    outcome = str(data.get("outcome") or "?")
    head = Text.assemble(("Outcome ", "bold"), (outcome.upper(), outcome_style(outcome)))
    if data.get("backend"):
        head.append(f"  → {data['backend']}")
        model = data.get("served_model") or data.get("model")
        if model:
            head.append(f" ({model})")
    if data.get("status"):
        head.append(f"  HTTP {data['status']}")
    parts.append(head)
    reason = data.get("route_reason") or data.get("reason")
    if reason:
        parts.append(Text.assemble(("Reason ", "bold"), str(reason)))

    requested = data.get("requested_model")
    if requested:
        line = Text.assemble(("Asked for ", "bold"), requested)
        resolved = data.get("resolved_model")
        if resolved and resolved != requested:
            line.append(f" → {resolved}")
        hops = data.get("alias_hops") or []
        if hops:
            line.append(f"  (alias: {' → '.join([requested, *hops])})", style="dim")
        parts.append(line)
    if data.get("requirements") is not None:
        parts.append(Text.assemble(("Needs ", "bold"), _needs(data["requirements"])))
    chain = data.get("chain") or []
    if len(chain) > 1 or data.get("fallback_used") or data.get("fallback_model"):
        line = Text.assemble(("Chain ", "bold"), " → ".join(chain) if chain else "")
        fallback = data.get("fallback_model")
        if fallback or data.get("fallback_used"):
            line.append(f"  fallback used{': ' + fallback if fallback else ''}", style=tone("warn"))
        parts.append(line)
    if data.get("error"):
        parts.append(Text.assemble(("Error ", outcome_style("error")), str(data["error"])))

    for number, step in enumerate(data.get("steps") or [], 1):
        step_outcome = str(step.get("outcome") or "?")
        title = Text.assemble(
            ("\n", ""),
            (f"Step {number} ", "bold"),
            (str(step.get("model") or ""), "bold"),
            "  ",
            (step_outcome, outcome_style(step_outcome)),
        )
        if step.get("backend"):
            title.append(f" → {step['backend']}")
        if step.get("reason"):
            title.append(f" — {step['reason']}", style="dim")
        if step.get("model_known") is False:
            title.append("  (no backend has this model)", style=tone("bad"))
        parts.append(title)
        candidates = step.get("candidates") or []
        parts.append(Text(f"  candidates: {', '.join(candidates) or 'none'}"))
        rejections = step.get("rejections") or []
        if rejections:
            table = Table(box=box.SIMPLE_HEAD, pad_edge=False, expand=False, padding=(0, 1))
            table.add_column("excluded", style=tone("bad"), no_wrap=True)
            table.add_column("stage", no_wrap=True)
            table.add_column("reason")
            for r in rejections:
                table.add_row(str(r.get("backend")), str(r.get("stage")), str(r.get("reason")))
            parts.append(table)

    attempts = data.get("attempts") or []
    if attempts:
        parts.append(Text("\nAttempts", style="bold"))
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
        for column in ("backend", "model", "outcome", "status", "ms", "error"):
            table.add_column(column, no_wrap=column != "error")
        for a in attempts:
            result = str(a.get("outcome"))
            table.add_row(
                str(a.get("backend")),
                str(a.get("model")),
                Text(result, outcome_style(result)),
                str(a.get("status") if a.get("status") is not None else "–"),
                f"{a.get('duration_ms', 0):.0f}",
                str(a.get("error") or ""),
            )
        parts.append(table)
    return Group(*parts)
