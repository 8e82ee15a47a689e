"""Model-version tag keys written at registration and read by the promotion gate.

Scores live in tags (not only in artifacts) so that the gate and the MLflow UI read them without
downloading anything. Tag values are strings; floats are written with ``repr`` (round-trip exact).
"""

from __future__ import annotations

import json
import logging
import math

from neurosam3d.registry.gate import EvalScores, TargetScore

log = logging.getLogger(__name__)

PREFIX = "neurosam3d."
DATA_VERSION = PREFIX + "data_version"
GIT_COMMIT = PREFIX + "git_commit"
#: the version's :class:`~neurosam3d.transforms.Preprocessing` record (JSON)
PREPROCESSING = PREFIX + "preprocessing"
TRAIN_MANIFEST_SHA256 = PREFIX + "train_manifest_sha256"
CHECKPOINT_SHA256 = PREFIX + "checkpoint_sha256"
EVAL_MANIFEST_SHA256 = PREFIX + "eval.manifest_sha256"
EVAL_CLICKS = PREFIX + "eval.clicks"
#: SHA-256 of the evaluation protocol (canonical JSON of summary.json's ``protocol``).
EVAL_PROTOCOL_SHA256 = PREFIX + "eval.protocol_sha256"
EVAL_MEAN = PREFIX + "eval.dice.mean"
EVAL_CATEGORY_PREFIX = PREFIX + "eval.dice.category."
#: Per-target Dice at the gate's clicks, JSON ``[[key, category, dice], ...]`` (the gate's
#: paired bootstrap); left out (with a warning) when over MLflow's tag length limit.
EVAL_TARGETS = PREFIX + "eval.targets"
#: MLflow's limit on a model-version tag value (characters).
MAX_TAG_VALUE = 100_000
#: On a version that became champion: the champion it replaced (what rollback returns to).
PREVIOUS_CHAMPION = PREFIX + "previous_champion"
PROMOTED_AT = PREFIX + "promoted_at"
#: On a version that was rolled back: when. Such a version is not promoted again automatically.
ROLLED_BACK_AT = PREFIX + "rolled_back_at"

CHAMPION = "champion"
CHALLENGER = "challenger"


def scores_to_tags(scores: EvalScores) -> dict[str, str]:
    """Encode evaluation scores as model-version tags."""
    tags = {
        EVAL_MANIFEST_SHA256: scores.manifest_sha256,
        EVAL_CLICKS: str(scores.clicks),
        EVAL_MEAN: repr(float(scores.mean)),
    }
    if scores.protocol_sha256 is not None:
        tags[EVAL_PROTOCOL_SHA256] = scores.protocol_sha256
    for name, value in scores.categories.items():
        tags[EVAL_CATEGORY_PREFIX + name] = repr(float(value))
    if scores.targets:
        rows = [
            [t.key, t.category, None if math.isnan(t.dice) else round(float(t.dice), 6)]
            for t in sorted(scores.targets, key=lambda t: t.key)
        ]
        text = json.dumps(rows, separators=(",", ":"))
        if len(text) <= MAX_TAG_VALUE:
            tags[EVAL_TARGETS] = text
        else:
            log.warning(
                "%d per-target scores exceed MLflow's tag limit: the gate will compare means "
                "without a noise estimate",
                len(rows),
            )
    return tags


def _targets(text: str | None) -> tuple[TargetScore, ...]:
    if not text:
        return ()
    return tuple(
        TargetScore(str(key), str(category), math.nan if dice is None else float(dice))
        for key, category, dice in json.loads(text)
    )


def scores_from_tags(tags: dict[str, str], what: str) -> EvalScores:
    """Decode :func:`scores_to_tags`; ``what`` names the model version in errors."""
    missing = [k for k in (EVAL_MANIFEST_SHA256, EVAL_CLICKS, EVAL_MEAN) if k not in tags]
    if missing:
        raise ValueError(
            f"{what} has no evaluation tags {missing}: register it with an evaluation summary "
            "(neurosam3d register --evaluation DIR)"
        )
    categories = {
        key.removeprefix(EVAL_CATEGORY_PREFIX): _float(value)
        for key, value in tags.items()
        if key.startswith(EVAL_CATEGORY_PREFIX)
    }
    return EvalScores(
        manifest_sha256=tags[EVAL_MANIFEST_SHA256],
        clicks=int(tags[EVAL_CLICKS]),
        mean=_float(tags[EVAL_MEAN]),
        categories=categories,
        protocol_sha256=tags.get(EVAL_PROTOCOL_SHA256) or None,
        targets=_targets(tags.get(EVAL_TARGETS)),
    )


def evaluation_identity(tags: dict[str, str]) -> tuple[str | None, str | None]:
    """(evaluation manifest hash, protocol fingerprint) of a version's tags; None where absent.

    Two versions' scores are comparable only when these are equal and neither is None.
    """
    return tags.get(EVAL_MANIFEST_SHA256) or None, tags.get(EVAL_PROTOCOL_SHA256) or None


def _float(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return math.nan
