"""The promotion gate: may a challenger replace the champion?

Pure comparison of two evaluation summaries (no MLflow). The rule (issue 6):

* both models were evaluated on the same evaluation manifest (same content hash), under the same
  protocol (same fingerprint of the summary's ``protocol``: click rule, seed, NSD tolerance, working
  grid, ...) and at the same number of clicks; otherwise nothing is comparable and the gate fails
  (the champion must be re-evaluated first). A score without a protocol fingerprint (registered
  before fingerprints existed) is comparable with nothing;
* the mean Dice difference (challenger - champion) at that click count is not a drop beyond
  noise: with per-target scores on both sides (paired by target), the lower bound of its
  ``confidence`` interval from a seeded paired bootstrap over targets is above ``-margin``;
  without them (versions registered before per-target scores), the challenger's mean is not
  below the champion's;
* no anatomical category is worse than the champion's by more than its margin (``margins``,
  default ``margin``; absolute Dice). Each category row shows its bootstrap interval too.

Edge cases, stated once: a category the champion has no score for (absent or NaN) imposes no
constraint; a category the champion scored but the challenger did not (absent or NaN) fails the
gate, since "not measured" must not pass for "not worse". With no champion at all the gate passes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

#: Tolerance for "not worse" on the mean, to absorb float round-trips through string tags.
_EPS = 1e-9
#: Bootstrap resamples of the paired differences.
RESAMPLES = 2000


@dataclass(frozen=True)
class TargetScore:
    """One evaluated target (``key``: dataset/split/case/class) at the gate's click count."""

    key: str
    category: str
    dice: float


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
    targets: tuple[TargetScore, ...] = ()


@dataclass(frozen=True)
class GateRow:
    """One line of the comparison table; ``low``/``high``: the bootstrap interval of the paired
    mean difference over the row's targets (NaN without per-target scores)."""

    name: str  # "mean" or a category
    champion: float
    challenger: float
    allowed_drop: float
    passed: bool
    low: float = math.nan
    high: float = math.nan
    targets: int = 0

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
            "| | champion | challenger | delta | 95% interval | targets | allowed drop | verdict |",
            "|---|---:|---:|---:|---|---:|---:|---|",
        ]
        for row in self.rows:
            verdict = "not comparable" if not self.comparable else "ok" if row.passed else "WORSE"
            interval = (
                "n/a"
                if math.isnan(row.low)
                else f"[{_fmt(row.low, signed=True)}, {_fmt(row.high, signed=True)}]"
            )
            lines.append(
                f"| {row.name} | {_fmt(row.champion)} | {_fmt(row.challenger)} | "
                f"{_fmt(row.delta, signed=True)} | {interval} | {row.targets} | "
                f"{row.allowed_drop:.3f} | {verdict} |"
            )
        return "\n".join(lines)


def _fmt(value: float, signed: bool = False) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def _missing(value: float | None) -> bool:
    return value is None or math.isnan(value)


def paired_differences(
    champion: EvalScores, challenger: EvalScores
) -> tuple[np.ndarray, np.ndarray]:
    """(challenger - champion Dice, category) per target scored on both sides, sorted by key."""
    old = {t.key: t for t in champion.targets}
    pairs = [
        (t.dice - old[t.key].dice, t.category)
        for t in sorted(challenger.targets, key=lambda t: t.key)
        if t.key in old and not _missing(t.dice) and not _missing(old[t.key].dice)
    ]
    return (
        np.array([d for d, _ in pairs], dtype=np.float64),
        np.array([c for _, c in pairs], dtype=object),
    )


def bootstrap_interval(
    differences: np.ndarray, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile interval of the mean of ``differences`` over ``RESAMPLES`` resamples with
    replacement (seeded: the same inputs give the same interval); NaNs when empty."""
    if differences.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = np.empty(RESAMPLES)
    for start in range(0, RESAMPLES, 250):  # bounded memory for large evaluations
        block = rng.integers(
            0, differences.size, size=(min(250, RESAMPLES - start), differences.size)
        )
        means[start : start + len(block)] = differences[block].mean(axis=1)
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def compare(
    champion: EvalScores | None,
    challenger: EvalScores,
    margin: float,
    *,
    margins: Mapping[str, float] | None = None,
    confidence: float = 0.95,
    seed: int = 0,
) -> GateResult:
    """Apply the gate; ``margin`` is the largest allowed drop in absolute Dice (of the mean's
    lower confidence bound, and of each category without its own entry in ``margins``)."""
    margins = dict(margins or {})
    if margin < 0 or any(m < 0 for m in margins.values()):
        raise ValueError(f"promotion margins must be >= 0, got {margin} and {margins}")
    if champion is None:
        rows = tuple(
            GateRow(name, math.nan, value, margins.get(name, margin), True)
            for name, value in [("mean", challenger.mean), *sorted(challenger.categories.items())]
        )
        return GateResult(True, rows, ())
    incomparable = not_comparable(champion, challenger)
    reasons: list[str] = list(incomparable)
    differences, categories = paired_differences(champion, challenger)
    low, high = bootstrap_interval(differences, confidence, seed)
    if _missing(challenger.mean):
        mean_ok = False
        reasons.append("the challenger has no mean Dice")
    elif differences.size:
        mean_ok = low > -margin - _EPS
        if not mean_ok:
            reasons.append(
                f"mean Dice difference {challenger.mean - champion.mean:+.4f}: its "
                f"{confidence:.0%} lower bound {low:+.4f} over {differences.size} targets is "
                f"below -{margin:.4f} (a drop beyond noise cannot be ruled out)"
            )
    else:
        mean_ok = _missing(champion.mean) or challenger.mean >= champion.mean - _EPS
        if not mean_ok:
            reasons.append(
                f"mean Dice {challenger.mean:.4f} is below the champion's {champion.mean:.4f} "
                "(no per-target scores on both sides: compared without a noise estimate)"
            )
    rows = [
        GateRow(
            "mean", champion.mean, challenger.mean, margin, mean_ok, low, high, differences.size
        )
    ]
    for name in sorted(set(champion.categories) | set(challenger.categories)):
        old = champion.categories.get(name, math.nan)
        new = challenger.categories.get(name, math.nan)
        allowed = margins.get(name, margin)
        if _missing(old):
            ok = True
        elif _missing(new):
            ok = False
            reasons.append(f"category {name!r} has no challenger score (champion {old:.4f})")
        else:
            ok = new >= old - allowed - _EPS
            if not ok:
                reasons.append(
                    f"category {name!r} dropped by {old - new:.4f} (> margin {allowed:.4f})"
                )
        inside = differences[categories == name] if differences.size else differences
        c_low, c_high = bootstrap_interval(inside, confidence, seed)
        rows.append(GateRow(name, old, new, allowed, ok, c_low, c_high, inside.size))
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
