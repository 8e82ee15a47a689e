"""Parsers of option values shared by several commands (one spelling per concept)."""

from __future__ import annotations

import typer


def parse_spacing(text: str | None) -> float | tuple[float, float, float] | str | None:
    """``"1.5"`` -> 1.5; ``"1,1,2.5"`` -> (1.0, 1.0, 2.5); ``"native"`` -> ``"native"``; None or
    ``""`` -> None."""
    if not text:
        return None
    if str(text).strip().lower() == "native":
        return "native"
    try:
        parts = [float(p) for p in str(text).split(",")]
    except ValueError as exc:
        raise typer.BadParameter(f"not a spacing in mm: {text!r}") from exc
    if len(parts) not in (1, 3) or min(parts) <= 0:
        raise typer.BadParameter("give one positive spacing in mm or three, comma-separated")
    return parts[0] if len(parts) == 1 else (parts[0], parts[1], parts[2])


def parse_window(text: str | None) -> tuple[float, float] | None:
    """``"-200,300"`` -> (-200.0, 300.0); None -> None."""
    if not text:
        return None
    try:
        low, high = (float(v) for v in str(text).split(","))
    except ValueError as exc:
        raise typer.BadParameter(f"not LOW,HIGH in HU: {text!r}") from exc
    if not low < high:
        raise typer.BadParameter(f"the window's low end {low} is not below its high end {high}")
    return low, high
