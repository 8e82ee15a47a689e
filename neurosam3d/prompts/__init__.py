"""Click and box prompt simulation for training and evaluation (batched torch)."""

from neurosam3d.prompts.clicks import (
    CLICK_RULES,
    NEGATIVE,
    NOT_A_POINT,
    POSITIVE,
    ClickRule,
    Clicks,
    binarise,
    box_from_mask,
    center_error_click,
    error_regions,
    get_click_rule,
    random_error_click,
)

__all__ = [
    "CLICK_RULES",
    "NEGATIVE",
    "NOT_A_POINT",
    "POSITIVE",
    "ClickRule",
    "Clicks",
    "binarise",
    "box_from_mask",
    "center_error_click",
    "error_regions",
    "get_click_rule",
    "random_error_click",
]
