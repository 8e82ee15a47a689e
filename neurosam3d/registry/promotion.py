"""Promotion by alias (``@challenger`` -> ``@champion``) behind the gate, and rollback.

Every move of ``@champion`` is a round arbitrated by the registry
(:mod:`neurosam3d.registry.arbiter`): the round counter is read before the champion, and the alias
moves only if this process wins the next round. Of racing promoters on any hosts exactly one
wins; the others change nothing and report :attr:`Action.CONFLICT` (run again to be gated
against the new champion). Moving the alias is the single commit point: the version's tags are
written first, so a crash leaves at worst a tag that the next attempt overwrites. Promoting the
current champion again changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from neurosam3d.registry import tags as T
from neurosam3d.registry.arbiter import (
    PromotionConflict,
    current_round,
    move_alias,
    promotion_round,
)
from neurosam3d.registry.gate import EvalScores, GateResult, compare

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

log = logging.getLogger(__name__)


class Action(StrEnum):
    PROMOTED = "promoted"
    ALREADY_CHAMPION = "already_champion"
    REJECTED = "rejected"
    DRY_RUN = "dry_run"
    #: Another promotion or rollback won the round: nothing changed.
    CONFLICT = "conflict"


@dataclass(frozen=True)
class PromotionOutcome:
    """What :func:`promote` did, the champion before and after, and the gate's table."""

    model_name: str
    challenger: str
    champion_before: str | None
    champion_after: str | None
    action: Action
    gate: GateResult


def version_by_alias(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version ``name@alias`` points at, or None when the alias (or the model) does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as err:
        if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def promote(
    client: MlflowClient,
    name: str,
    version: str | None = None,
    margin: float = 0.02,
    dry_run: bool = False,
    seed: int = 0,
) -> PromotionOutcome:
    """Gate ``version`` (default: ``@challenger``) against ``@champion`` and move the alias if it
    passes and this process wins the registry's promotion round.

    ``margin`` is the largest allowed Dice drop (the lower confidence bound of the mean
    difference, and each category's drop) at the evaluation's click count; ``seed`` seeds the
    gate's bootstrap. A version that was rolled back is never promoted again by this function.
    """
    if version is None:
        found = version_by_alias(client, name, T.CHALLENGER)
        if found is None:
            raise LookupError(f"model {name!r} has no @{T.CHALLENGER}: register a model first")
        version = str(found.version)
    seen = current_round(client, name)  # before the champion: a later move makes our round stale
    challenger = client.get_model_version(name, version)
    champion = version_by_alias(client, name, T.CHAMPION)
    before = str(champion.version) if champion is not None else None
    new_scores = T.scores_from_tags(challenger.tags, f"{name} v{version}")
    old_scores = (
        T.scores_from_tags(champion.tags, f"{name} v{before}") if champion is not None else None
    )
    gate = compare(old_scores, new_scores, margin, seed=seed)
    if before == version:
        return PromotionOutcome(name, version, before, before, Action.ALREADY_CHAMPION, gate)
    if T.ROLLED_BACK_AT in challenger.tags:
        reason = f"v{version} was rolled back at {challenger.tags[T.ROLLED_BACK_AT]}"
        gate = replace(gate, passed=False, reasons=(*gate.reasons, reason))
    if dry_run:
        return PromotionOutcome(name, version, before, before, Action.DRY_RUN, gate)
    if not gate.passed:
        log.warning("%s v%s not promoted: %s", name, version, "; ".join(gate.reasons))
        return PromotionOutcome(name, version, before, before, Action.REJECTED, gate)
    try:
        with promotion_round(client, name, seen) as number:
            client.set_model_version_tag(name, version, T.PREVIOUS_CHAMPION, before or "")
            client.set_model_version_tag(name, version, T.PROMOTED_AT, _now())
            move_alias(client, name, T.CHAMPION, version)
    except PromotionConflict as err:
        log.warning("%s v%s not promoted: %s", name, version, err)
        gate = replace(gate, reasons=(*gate.reasons, str(err)))
        return PromotionOutcome(name, version, before, before, Action.CONFLICT, gate)
    log.info("%s: round %d, @%s %s -> v%s", name, number, T.CHAMPION, before, version)
    return PromotionOutcome(name, version, before, version, Action.PROMOTED, gate)


def rollback(client: MlflowClient, name: str, to_version: str | None = None) -> tuple[str, str]:
    """Move ``@champion`` back (to the champion it replaced, or ``to_version``); return (from, to).

    A registry round like a promotion: :class:`PromotionConflict` if another one won it.
    """
    seen = current_round(client, name)
    champion = version_by_alias(client, name, T.CHAMPION)
    if champion is None:
        raise LookupError(f"model {name!r} has no @{T.CHAMPION} to roll back")
    current = str(champion.version)
    target = to_version or champion.tags.get(T.PREVIOUS_CHAMPION, "")
    if not target:
        raise LookupError(
            f"{name} v{current} replaced no earlier champion: pass the version to roll back to"
        )
    client.get_model_version(name, target)  # fails clearly if it does not exist
    with promotion_round(client, name, seen):
        client.set_model_version_tag(name, current, T.ROLLED_BACK_AT, _now())
        move_alias(client, name, T.CHAMPION, target)
    log.info("%s: rolled @%s back from v%s to v%s", name, T.CHAMPION, current, target)
    return current, target


def set_scores(client: MlflowClient, name: str, version: str, scores: EvalScores) -> None:
    """Replace a version's evaluation tags (stale per-category and protocol ones are removed)."""
    current = client.get_model_version(name, version).tags
    new = T.scores_to_tags(scores)
    for key in current:
        stale = key.startswith(T.EVAL_CATEGORY_PREFIX) or key in (
            T.EVAL_PROTOCOL_SHA256,
            T.EVAL_TARGETS,
        )
        if stale and key not in new:
            client.delete_model_version_tag(name, version, key)
    for key, value in new.items():
        client.set_model_version_tag(name, version, key, value)


def rescore(client: MlflowClient, name: str, version: str, scores: EvalScores) -> None:
    """Replace the evaluation tags of ``name`` v``version`` (e.g. the champion re-evaluated on a
    new evaluation manifest or protocol, so that the gate compares like with like).

    A registry round: a promotion gated on the old scores meanwhile cannot move the alias.
    """
    with promotion_round(client, name, current_round(client, name)):
        set_scores(client, name, version, scores)
        log.info(
            "%s v%s rescored on manifest %s, protocol %s",
            name,
            version,
            scores.manifest_sha256[:12],
            (scores.protocol_sha256 or "unknown")[:12],
        )
