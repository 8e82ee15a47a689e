"""The promotion gate: may a challenger replace the champion?

Pure comparison of two evaluation summaries (no MLflow). The rule (issue 6):

* both models were evaluated on the same evaluation manifest (same content hash), under the same
  protocol (same fingerprint of the summary's ``protocol``: click rule, seed, NSD tolerance, working
  grid, ...) and at the same number of clicks; otherwise nothing is comparable and the gate fails
  (the champion must be re-evaluated first). A score without a protocol fingerprint (registered
  before fingerprints existed) is comparable with nothing;
* the challenger's mean Dice at that click count is not below the champion's;
* no anatomical category is worse than the champion's by more than ``margin`` (absolute Dice).

Edge cases, stated once: a category the champion has no score for (absent or NaN) imposes no
constraint; a category the champion scored but the challenger did not (absent or NaN) fails the
gate, since "not measured" must not pass for "not worse". With no champion at all the gate passes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

#: Tolerance for "not worse" on the mean, to absorb float round-trips through string tags.
_EPS = 1e-9


@dataclass(frozen=True)
class EvalScores:
    """What the gate needs from one model's evaluation.

    ``mean`` and ``categories`` are Dice in [0, 1] after ``clicks`` clicks; NaN means "no score".
    ``manifest_sha256`` identifies the evaluation manifest, ``protocol_sha256`` the evaluation
    protocol (``None``: unknown, comparable with nothing).
    """

    manifest_sha256: str
    clicks: int
    mean: float
    categories: dict[str, float] = field(default_factory=dict)
    protocol_sha256: str | None = None


@dataclass(frozen=True)
class GateRow:
    """One line of the comparison table."""

    name: str  # "mean" or a category
    champion: float
    challenger: float
    allowed_drop: float
    passed: bool

    @property
    def delta(self) -> float:
        return self.challenger - self.champion


@dataclass(frozen=True)
class GateResult:
    """The verdict, the table behind it and the reasons it failed (empty when it passed).

    ``incomparable`` holds the reasons the two evaluations cannot be compared at all (different
    manifest, protocol or clicks; also listed in ``reasons``): the rows are then no evidence.
    """

    passed: bool
    rows: tuple[GateRow, ...]
    reasons: tuple[str, ...]
    incomparable: tuple[str, ...] = ()

    @property
    def comparable(self) -> bool:
        return not self.incomparable

    def table_markdown(self) -> str:
        """The comparison as a Markdown table (what ``neurosam3d promote`` prints)."""
        lines = []
        if not self.comparable:
            lines += [
                "**NOT COMPARABLE** (the champion needs re-scoring; the rows below decide nothing): "
                + "; ".join(self.incomparable),
                "",
            ]
        lines += [
            "| | champion | challenger | delta | allowed drop | verdict |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for row in self.rows:
            verdict = "not comparable" if not self.comparable else "ok" if row.passed else "WORSE"
            lines.append(
                f"| {row.name} | {_fmt(row.champion)} | {_fmt(row.challenger)} | "
                f"{_fmt(row.delta, signed=True)} | {row.allowed_drop:.3f} | {verdict} |"
            )
        return "\n".join(lines)


def _fmt(value: float, signed: bool = False) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def _missing(value: float | None) -> bool:
    return value is None or math.isnan(value)


def compare(champion: EvalScores | None, challenger: EvalScores, margin: float) -> GateResult:
    """Apply the gate; ``margin`` is the largest allowed per-category drop in absolute Dice."""
    if margin < 0:
        raise ValueError(f"the promotion margin must be >= 0, got {margin}")
    if champion is None:
        rows = tuple(
            GateRow(name, math.nan, value, margin, True)
            for name, value in [("mean", challenger.mean), *sorted(challenger.categories.items())]
        )
        return GateResult(True, rows, ())
    incomparable = not_comparable(champion, challenger)
    reasons: list[str] = list(incomparable)
    mean_ok = not _missing(challenger.mean) and (
        _missing(champion.mean) or challenger.mean >= champion.mean - _EPS
    )
    if not mean_ok:
        reasons.append(
            f"mean Dice {challenger.mean:.4f} is below the champion's {champion.mean:.4f}"
        )
    rows = [GateRow("mean", champion.mean, challenger.mean, 0.0, mean_ok)]
    for name in sorted(set(champion.categories) | set(challenger.categories)):
        old = champion.categories.get(name, math.nan)
        new = challenger.categories.get(name, math.nan)
        if _missing(old):
            ok = True
        elif _missing(new):
            ok = False
            reasons.append(f"category {name!r} has no challenger score (champion {old:.4f})")
        else:
            ok = new >= old - margin - _EPS
            if not ok:
                reasons.append(
                    f"category {name!r} dropped by {old - new:.4f} (> margin {margin:.4f})"
                )
        rows.append(GateRow(name, old, new, margin, ok))
    return GateResult(not reasons, tuple(rows), tuple(reasons), tuple(incomparable))


def not_comparable(champion: EvalScores, challenger: EvalScores) -> list[str]:
    """Why the two evaluations cannot be compared (empty when they can): a different manifest,
    protocol or click count, or a protocol fingerprint missing on either side."""
    reasons = []
    if champion.manifest_sha256 != challenger.manifest_sha256:
        reasons.append(
            "evaluated on different manifests "
            f"(champion {champion.manifest_sha256[:12]}, challenger {challenger.manifest_sha256[:12]}):"
            " re-evaluate the champion on the challenger's manifest"
        )
    if champion.protocol_sha256 is None or challenger.protocol_sha256 is None:
        missing = [
            who
            for who, scores in (("champion", champion), ("challenger", challenger))
            if scores.protocol_sha256 is None
        ]
        reasons.append(
            f"no evaluation protocol fingerprint on the {' and '.join(missing)} (registered "
            "before protocols were recorded): re-evaluate it under the challenger's protocol"
        )
    elif champion.protocol_sha256 != challenger.protocol_sha256:
        reasons.append(
            "evaluated under different protocols (click rule, seed, NSD tolerance, orientation, "
            f"spacing, ...; champion {champion.protocol_sha256[:12]}, challenger "
            f"{challenger.protocol_sha256[:12]}): re-evaluate the champion under the "
            "challenger's protocol"
        )
    if champion.clicks != challenger.clicks:
        reasons.append(
            f"evaluated at different click counts (champion {champion.clicks}, "
            f"challenger {challenger.clicks})"
        )
    return reasons
