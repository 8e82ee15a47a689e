"""Promotion rounds arbitrated by the MLflow registry itself (safe across hosts, no shared folder).

MLflow has no compare-and-set on aliases or tags, but creating a registered model is atomic: the
name is the store's primary key (SQLite, Postgres, MySQL behind a tracking server alike), so of
several processes creating the same name exactly one succeeds and the others get
``RESOURCE_ALREADY_EXISTS``. Every move of ``@champion`` is one numbered *round*:

1. read the round counter, the registered-model tag ``neurosam3d.promotion.round`` (``n``; 0 when
   absent), *before* reading the champion the gate compares against;
2. claim round ``n + 1`` by creating the registered model ``<name>.promotion-claim.<n + 1>``: one
   promoter wins, the others get :class:`PromotionConflict`;
3. the winner re-reads the counter (still ``n``, else its view was stale: conflict), moves the
   alias, re-reads it (it must name the winner's version), then sets the counter to ``n + 1``
   and deletes the claim of round ``n``.

A promoter that gated against an old champion can therefore never move the alias: its round was
won by whoever moved the alias since. A claim whose holder died before finishing is abandoned
after ``stale_after_s``: the next promoter advances the counter past it and reports a conflict,
so that a rerun claims the following round. The same mechanism serves ``neurosam3d promote``,
Dagster's promotion asset and rollback, whatever host or home folder they run from.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING

from neurosam3d.registry import tags as T

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

#: Registered-model tag: the number of the last completed promotion round.
ROUND = T.PREFIX + "promotion.round"
#: Tag on a claim: who holds it (host:pid).
CLAIM_OWNER = T.PREFIX + "promotion.claim_owner"


class PromotionConflict(RuntimeError):
    """Another promotion (or rollback) won the round: nothing was changed; run again."""


def claim_name(name: str, round_number: int) -> str:
    """The registered model whose creation claims ``round_number`` for model ``name``."""
    return f"{name}.promotion-claim.{round_number}"


def current_round(client: MlflowClient, name: str) -> int:
    """The number of the last completed round of ``name`` (0 when none)."""
    tags = client.get_registered_model(name).tags
    try:
        return int(tags.get(ROUND, "0"))
    except ValueError:
        raise ValueError(f"registered model {name!r}: tag {ROUND} is not a number") from None


def _delete(client: MlflowClient, model: str) -> None:
    from mlflow.exceptions import MlflowException

    with suppress(MlflowException):
        client.delete_registered_model(model)


def _claim(client: MlflowClient, name: str, round_number: int, stale_after_s: float) -> str:
    from mlflow.exceptions import MlflowException

    claim = claim_name(name, round_number)
    owner = f"{socket.gethostname()}:{os.getpid()}"
    try:
        client.create_registered_model(
            claim,
            tags={CLAIM_OWNER: owner},
            description=f"internal: claim of promotion round {round_number} of {name}",
        )
        return claim
    except MlflowException as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    held = client.get_registered_model(claim)
    age_s = time.time() - held.creation_timestamp / 1000
    if age_s > stale_after_s and current_round(client, name) == round_number - 1:
        log.warning("%s: round %d abandoned by %s; skipping it", name, round_number, held.tags)
        client.set_registered_model_tag(name, ROUND, str(round_number))
    raise PromotionConflict(
        f"{name}: another promotion or rollback ({held.tags.get(CLAIM_OWNER, 'unknown')}) holds "
        f"round {round_number}; @champion may have moved: run again to gate against it"
    )


@contextmanager
def promotion_round(
    client: MlflowClient, name: str, seen: int, stale_after_s: float = 900.0
) -> Iterator[int]:
    """Win round ``seen + 1`` (``seen`` read by :func:`current_round` before the champion) or
    raise :class:`PromotionConflict`; the body moves the alias. On success the round is
    recorded; if the body raises, the claim is released and nothing is recorded."""
    number = seen + 1
    claim = _claim(client, name, number, stale_after_s)
    try:
        if current_round(client, name) != seen:
            raise PromotionConflict(f"{name}: round {number} was completed meanwhile: run again")
        yield number
    except BaseException:
        _delete(client, claim)
        raise
    client.set_registered_model_tag(name, ROUND, str(number))
    if seen:
        _delete(client, claim_name(name, seen))


def move_alias(client: MlflowClient, name: str, alias: str, version: str) -> None:
    """Set ``name@alias`` to ``version`` and re-read it: :class:`PromotionConflict` if the
    registry then names another version (a writer that bypassed the rounds)."""
    client.set_registered_model_alias(name, alias, version)
    now = str(client.get_model_version_by_alias(name, alias).version)
    if now != version:
        raise PromotionConflict(f"{name}@{alias} is v{now} right after setting it to v{version}")
