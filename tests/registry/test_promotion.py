"""Promotion, rollback and racing promotions against a real SQLite MLflow registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from neurosam3d.registry import tags as T
from neurosam3d.registry.promotion import Action, promote, rollback, version_by_alias
from tests.racing import race
from tests.registry.conftest import PROTOCOL, add_version

NAME = "seg"


def champion(client) -> str | None:
    found = version_by_alias(client, NAME, T.CHAMPION)
    return None if found is None else str(found.version)


def test_gate_never_promotes_worse_and_rollback_returns(client, tmp_path: Path) -> None:
    v1 = add_version(client, NAME, 0.50, {"bone": 0.50, "muscle": 0.40}, tmp_path)
    assert promote(client, NAME).action is Action.PROMOTED
    assert champion(client) == v1

    worse = add_version(client, NAME, 0.55, {"bone": 0.40, "muscle": 0.60}, tmp_path)
    outcome = promote(client, NAME, margin=0.05)
    assert outcome.action is Action.REJECTED and outcome.challenger == worse
    assert champion(client) == v1

    better = add_version(client, NAME, 0.60, {"bone": 0.49, "muscle": 0.60}, tmp_path)
    dry = promote(client, NAME, margin=0.02, dry_run=True)
    assert dry.action is Action.DRY_RUN and dry.gate.passed and champion(client) == v1
    assert promote(client, NAME, margin=0.02).action is Action.PROMOTED
    assert champion(client) == better
    again = promote(client, NAME, version=better)
    assert again.action is Action.ALREADY_CHAMPION and champion(client) == better

    assert rollback(client, NAME) == (better, v1)
    assert champion(client) == v1
    rolled = promote(client, NAME, version=better)
    assert rolled.action is Action.REJECTED and "rolled back" in rolled.gate.reasons[-1]
    with pytest.raises(LookupError, match="no earlier champion"):
        rollback(client, NAME)


def _promote_elsewhere(tracking_uri: str, version: str) -> str:
    """A promoter as on another host (run by :func:`tests.racing.race` in its own interpreter,
    with its own ``HOME`` and ``NEUROSAM3D_LOCK_DIR``): only the registry is shared."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    return promote(client, NAME, version=version, margin=0.05).action.value


def test_racing_promoters_on_separate_hosts_exactly_one_wins(
    client, tracking_uri: str, tmp_path: Path
) -> None:
    """Three challengers, each better than the champion but each worse than the others in one
    category: whatever the timing, one is promoted; each other one either lost the round
    (conflict) or was gated against the winner (rejected). No shared lock folder is involved."""
    from neurosam3d.registry.arbiter import ROUND, claim_name

    v1 = add_version(client, NAME, 0.4, {"a": 0.4, "b": 0.4, "c": 0.4}, tmp_path)
    assert promote(client, NAME).action is Action.PROMOTED
    challengers = [
        add_version(client, NAME, 0.6 + i / 1000, dict(zip("abc", best, strict=True)), tmp_path)
        for i, best in enumerate([(0.9, 0.5, 0.5), (0.5, 0.9, 0.5), (0.5, 0.5, 0.9)])
    ]
    homes = [tmp_path / f"host{i}" for i in range(len(challengers))]
    actions = race(
        "tests.registry.test_promotion:_promote_elsewhere",
        [(tracking_uri, v) for v in challengers],
        tmp_path / "race",
        envs=[{"HOME": str(h), "NEUROSAM3D_LOCK_DIR": str(h / "locks")} for h in homes],
        run_timeout=180,
    )
    assert actions.count("promoted") == 1, actions
    assert set(actions) <= {"promoted", "conflict", "rejected"}
    winner = challengers[actions.index("promoted")]
    assert champion(client) == winner
    assert client.get_model_version(NAME, winner).tags[T.PREVIOUS_CHAMPION] == v1
    losers = [v for v in challengers if v != winner]
    assert all(T.PROMOTED_AT not in client.get_model_version(NAME, v).tags for v in losers)
    assert client.get_registered_model(NAME).tags[ROUND] == "2"  # two moves of @champion
    leftover = {m.name for m in client.search_registered_models()} - {NAME}
    assert leftover == {claim_name(NAME, 2)}  # earlier and losing claims are gone
    assert not (tmp_path / "host0" / "locks").exists()  # the registry arbitrated, no file


def test_a_promoter_gated_on_a_stale_champion_cannot_move_the_alias(client, tmp_path: Path) -> None:
    """A round completed between reading the champion and moving the alias makes it a conflict."""
    from neurosam3d.registry.arbiter import PromotionConflict, current_round, promotion_round

    add_version(client, NAME, 0.4, {"a": 0.4}, tmp_path)
    promote(client, NAME)
    seen = current_round(client, NAME)  # a slow promoter read the round here ...
    v2 = add_version(client, NAME, 0.6, {"a": 0.6}, tmp_path)
    assert promote(client, NAME).action is Action.PROMOTED  # ... then another one promoted
    with (
        pytest.raises(PromotionConflict, match="another promotion"),
        promotion_round(client, NAME, seen),
    ):
        pytest.fail("the stale round must not be won")
    assert champion(client) == v2


def test_rescored_champion_is_gated_on_the_new_manifest(client, tmp_path: Path) -> None:
    from neurosam3d.registry.gate import EvalScores
    from neurosam3d.registry.promotion import rescore

    v1 = add_version(client, NAME, 0.5, {"bone": 0.5, "gland": 0.4}, tmp_path)
    promote(client, NAME)
    new_manifest = EvalScores("b" * 64, 5, 0.6, {"bone": 0.7}, PROTOCOL)
    v2 = add_version(client, NAME, 0.6, {"bone": 0.6}, tmp_path)
    client.set_model_version_tag(NAME, v2, T.EVAL_MANIFEST_SHA256, new_manifest.manifest_sha256)
    assert "different manifests" in promote(client, NAME, dry_run=True).gate.reasons[0]

    rescore(client, NAME, v1, new_manifest)
    tags = client.get_model_version(NAME, v1).tags
    assert T.EVAL_CATEGORY_PREFIX + "gland" not in tags  # not measured on the new manifest
    outcome = promote(client, NAME)
    assert outcome.action is Action.REJECTED  # bone 0.6 < champion's new 0.7 - margin
    assert champion(client) == v1


def test_better_challenger_on_another_protocol_is_not_promoted(client, tmp_path: Path) -> None:
    from neurosam3d.registry.gate import EvalScores
    from neurosam3d.registry.promotion import rescore

    v1 = add_version(client, NAME, 0.5, {"bone": 0.5}, tmp_path, protocol="c" * 64)
    promote(client, NAME)
    # Far better, on the same manifest and clicks, but scored under another protocol.
    v2 = add_version(client, NAME, 0.9, {"bone": 0.9}, tmp_path, protocol="r" * 64)
    outcome = promote(client, NAME)
    assert outcome.action is Action.REJECTED and not outcome.gate.comparable
    assert "different protocols" in outcome.gate.reasons[0]
    assert "NOT COMPARABLE" in outcome.gate.table_markdown()
    assert champion(client) == v1

    # Re-scored under the challenger's protocol, the champion is compared like with like.
    tags = client.get_model_version(NAME, v2).tags
    rescore(
        client,
        NAME,
        v1,
        EvalScores(tags[T.EVAL_MANIFEST_SHA256], 5, 0.6, {"bone": 0.6}, "r" * 64),
    )
    assert promote(client, NAME).action is Action.PROMOTED
    assert champion(client) == v2


def test_champion_registered_without_protocol_fingerprint_needs_rescoring(
    client, tmp_path: Path
) -> None:
    v1 = add_version(client, NAME, 0.5, {"bone": 0.5}, tmp_path, protocol=None)
    assert promote(client, NAME).action is Action.PROMOTED  # no champion: nothing to compare
    add_version(client, NAME, 0.9, {"bone": 0.9}, tmp_path)
    outcome = promote(client, NAME)
    assert outcome.action is Action.REJECTED and not outcome.gate.comparable
    assert "no evaluation protocol fingerprint on the champion" in outcome.gate.reasons[0]
    assert champion(client) == v1


def test_rescore_removes_a_stale_protocol_fingerprint(client, tmp_path: Path) -> None:
    from neurosam3d.registry.gate import EvalScores
    from neurosam3d.registry.promotion import rescore

    v1 = add_version(client, NAME, 0.5, {"bone": 0.5}, tmp_path)
    rescore(client, NAME, v1, EvalScores("b" * 64, 5, 0.6, {"bone": 0.6}))
    assert T.EVAL_PROTOCOL_SHA256 not in client.get_model_version(NAME, v1).tags
