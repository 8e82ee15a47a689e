"""The evaluation protocol fingerprint that registration stores beside the manifest hash."""

from __future__ import annotations

from neurosam3d.registry import tags as T
from neurosam3d.registry.register import protocol_sha256, scores_from_summary

PROTOCOL = {
    "click_rule": "random_error",
    "clicks": 10,
    "seed": 0,
    "nsd_tolerance_mm": 2.0,
    "orientation": None,
    "spacing_mm": None,
    "overlap": 0.25,
    "threshold": 0.5,
}


def summary(**protocol) -> dict:
    return {
        "manifest_sha256": "m" * 64,
        "gate_clicks": 5,
        "mean_dice": {"1": 0.3, "5": 0.6},
        "category_dice": {"bone": 0.6},
        "protocol": PROTOCOL | protocol,
    }


def test_fingerprint_is_canonical_and_sees_every_protocol_field() -> None:
    base = protocol_sha256(PROTOCOL)
    assert len(base) == 64
    assert protocol_sha256(dict(reversed(PROTOCOL.items()))) == base  # key order
    assert protocol_sha256(PROTOCOL | {"nsd_tolerance_mm": 2}) == base  # 2 == 2.0
    for change in [
        {"click_rule": "center_error"},
        {"seed": 1},
        {"nsd_tolerance_mm": 1.0},
        {"orientation": "RAS"},
        {"spacing_mm": 1.5},
        {"overlap": 0.5},
        {"threshold": 0.4},
        {"clicks": 5},
    ]:
        assert protocol_sha256(PROTOCOL | change) != base, change


def test_registration_tags_carry_the_fingerprint() -> None:
    scores = scores_from_summary(summary())
    assert scores.protocol_sha256 == protocol_sha256(PROTOCOL)
    tags = T.scores_to_tags(scores)
    assert tags[T.EVAL_PROTOCOL_SHA256] == protocol_sha256(PROTOCOL)
    assert T.scores_from_tags(tags, "v1") == scores
    assert T.evaluation_identity(tags) == ("m" * 64, protocol_sha256(PROTOCOL))
    other = scores_from_summary(summary(click_rule="center_error", spacing_mm=1.5))
    assert other.protocol_sha256 != scores.protocol_sha256


def test_summary_without_protocol_has_no_fingerprint() -> None:
    old = summary()
    del old["protocol"]
    scores = scores_from_summary(old)
    assert scores.protocol_sha256 is None
    assert T.EVAL_PROTOCOL_SHA256 not in T.scores_to_tags(scores)
    assert T.evaluation_identity(T.scores_to_tags(scores)) == ("m" * 64, None)
