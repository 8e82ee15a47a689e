"""Lightning module: SAM-Med3D interactive training and click-based validation.

The :class:`~neurosam3d.model.Sam3D` network is the attribute ``model``, so the keys of a
Lightning checkpoint's ``state_dict`` are ``model.<release key>``
(``neurosam3d.model.load_checkpoint`` strips that prefix).
"""

from __future__ import annotations

import logging
from math import nan
from typing import Any

import lightning as L
import numpy as np
import torch

from neurosam3d.prompts import get_click_rule
from neurosam3d.taxonomy import TRAINED_PAIRS_KEY
from neurosam3d.training.checkpoints import drop_clock_state
from neurosam3d.training.config import TrainConfig, config_from_dict
from neurosam3d.training.interaction import run_interaction
from neurosam3d.training.preprocessing import training_preprocessing
from neurosam3d.training.schedules import lr_factor
from neurosam3d.transforms import PREPROCESSING_KEY

logger = logging.getLogger(__name__)

#: checkpoint key that held the MLflow run id in checkpoints written before ``OUT/run.json``
#: (read on resume only; checkpoints no longer hold any run-specific id)
MLFLOW_RUN_ID_KEY = "neurosam3d_mlflow_run_id"
#: checkpoint key holding the validation history, so a resumed run knows its earlier best
VAL_HISTORY_KEY = "neurosam3d_val_history"


def _seed(*parts: int) -> int:
    """A 63-bit seed mixed from integers (stable across processes and runs)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> 1)


def build_network(cfg: TrainConfig) -> torch.nn.Module:
    """The ``cfg.model`` network: fresh, or loaded from ``checkpoint``, then the encoder from
    ``pretrained_encoder``; activation checkpointing as configured."""
    from neurosam3d import model as models

    arch = cfg.model.architecture()
    if cfg.model.checkpoint:
        logger.info("fine-tuning from %s", cfg.model.checkpoint)
        network = models.load_checkpoint(cfg.model.checkpoint, name=arch)
    else:
        network = models.build_model(arch)
    if cfg.model.pretrained_encoder:
        models.load_pretrained_encoder(network, cfg.model.pretrained_encoder)
    network.image_encoder.set_activation_checkpointing(cfg.model.activation_checkpointing)
    return network


class InteractiveSegmentationModule(L.LightningModule):
    """Trains ``self.model`` with simulated clicks; validates Dice after ``clicks.val_report``.

    Validation Dice follows the evaluation's empty-mask policy (:mod:`neurosam3d.evaluation.
    metrics`): an item whose target and prediction are both empty scores NaN and is left out of
    the mean (``nanmean`` over the items of all ranks); ``val/dice_k`` is NaN if no item scored.

    ``config`` is :meth:`TrainConfig.to_dict` output; it is saved as the hyper-parameters, so a
    checkpoint rebuilds the module with ``load_from_checkpoint(path)``. It is not sent to the
    logger from here: MLflow params are immutable, and a resumed run may change the config.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.save_hyperparameters({"config": config}, logger=False)  # run.py logs params once
        self.cfg = config_from_dict(config)
        clicks = self.cfg.clicks
        if any(not 1 <= k <= clicks.val_clicks for k in clicks.val_report):
            raise ValueError(
                f"clicks.val_report {clicks.val_report} must lie in 1..{clicks.val_clicks}"
            )
        reported = [f"val/dice_{k}" for k in clicks.val_report]
        if self.cfg.trainer.monitor not in reported:
            raise ValueError(
                f"trainer.monitor {self.cfg.trainer.monitor!r} must be one of {reported}"
            )
        self.model = build_network(self.cfg)
        #: what the crops are (saved in every checkpoint; evaluation and predict read it)
        self.preprocessing = training_preprocessing(self.cfg)
        self.train_rule = get_click_rule(clicks.rule)
        self.val_rule = get_click_rule(clicks.val_rule)
        self._val_sums: torch.Tensor | None = None
        #: ``(global_step, {metric: value})`` of every validation run, in order
        self.val_history: list[tuple[int, dict[str, float]]] = []
        #: MLflow client and run id to send overlays to (set by :func:`neurosam3d.training.train`)
        self.overlay_sink: tuple[Any, str] | None = None
        #: ``[[dataset, class_name], ...]`` the training rows cover (set by ``train``; saved in
        #: checkpoints, where evaluation reads seen/unseen from)
        self.trained_pairs: list[list[str]] | None = None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        drop_clock_state(checkpoint)  # the bytes depend on the training, not on the clock
        checkpoint[VAL_HISTORY_KEY] = [[step, dict(m)] for step, m in self.val_history]
        checkpoint[PREPROCESSING_KEY] = self.preprocessing.to_dict()
        if self.trained_pairs is not None:
            checkpoint[TRAINED_PAIRS_KEY] = [list(p) for p in self.trained_pairs]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.val_history = [(int(step), dict(m)) for step, m in checkpoint.get(VAL_HISTORY_KEY, [])]
        if TRAINED_PAIRS_KEY in checkpoint:
            self.trained_pairs = [list(p) for p in checkpoint[TRAINED_PAIRS_KEY]]

    def _generator(self, seed: int) -> torch.Generator:
        gen = torch.Generator(device=self.device)
        gen.manual_seed(seed)
        return gen

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        clicks = self.cfg.clicks
        # Seeded by the batch's index over all epochs, not (epoch, batch_idx): a run resumed from a
        # checkpoint written after fit stopped mid-epoch is one epoch ahead in Lightning's count.
        step_index = self.trainer.fit_loop.epoch_loop.total_batch_idx
        seed = _seed(self.cfg.seed, step_index, self.global_rank)
        refine = (
            int(np.random.default_rng(seed).integers(1, clicks.num_clicks))
            if clicks.num_clicks > 1
            else None
        )
        out = run_interaction(
            self.model,
            batch["image"],
            batch["target"],
            num_clicks=clicks.num_clicks,
            rule=self.train_rule,
            generator=self._generator(seed),
            refine_step=refine,
            iou_loss_weight=clicks.iou_loss_weight,
        )
        bs = batch["image"].shape[0]
        self.log("train/loss", out.loss, prog_bar=True, batch_size=bs)
        self.log("train/dice_first", out.dice[0].nanmean(), batch_size=bs)
        self.log("train/dice_last", out.dice[-1].nanmean(), batch_size=bs)
        return out.loss

    def on_validation_epoch_start(self) -> None:
        # per reported click: sum of the scored Dice values, number scored; then all items
        self._val_sums = torch.zeros(2 * len(self.cfg.clicks.val_report) + 1, device=self.device)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        clicks = self.cfg.clicks
        rows = batch["row"]
        out = run_interaction(
            self.model,
            batch["image"],
            batch["target"],
            num_clicks=clicks.val_clicks,
            rule=self.val_rule,
            # one generator per item, seeded by its row: clicks (hence Dice) do not depend on
            # the batch size or the number of ranks
            generator=[self._generator(_seed(clicks.val_seed, int(row))) for row in rows],
            compute_loss=False,
        )
        assert self._val_sums is not None
        picked = out.dice[[k - 1 for k in clicks.val_report]]
        scored = ~picked.isnan()
        self._val_sums += torch.cat(
            (
                picked.nan_to_num(0.0).sum(dim=1),
                scored.sum(dim=1).to(picked.dtype),
                picked.new_tensor([rows.numel()]),
            )
        )
        if batch_idx == 0 and self.global_rank == 0:
            self._log_overlays(batch, out)

    def on_validation_epoch_end(self) -> None:
        assert self._val_sums is not None
        sums = self.trainer.strategy.reduce(self._val_sums, reduce_op="sum")
        report = self.cfg.clicks.val_report
        count = float(sums[-1])
        # nanmean over items: an item whose target and prediction are both empty is not scored
        # (the evaluation policy, neurosam3d.evaluation.metrics); NaN when no item was scored
        metrics = {
            f"val/dice_{k}": float(sums[i]) / float(n) if (n := sums[len(report) + i]) > 0 else nan
            for i, k in enumerate(report)
        }
        for name, value in metrics.items():
            self.log(name, value, prog_bar=name.endswith("_5"), sync_dist=False)
        self.log("val/items", count)
        self.val_history.append((self.global_step, metrics))
        logger.info("step %d: %s", self.global_step, {k: round(v, 4) for k, v in metrics.items()})

    def _log_overlays(self, batch: dict[str, torch.Tensor], out: Any) -> None:
        n = min(self.cfg.tracking.overlays, batch["image"].shape[0])
        if self.overlay_sink is None or n == 0:
            return
        import matplotlib.pyplot as plt

        from neurosam3d.training.overlays import overlay_figure

        client, run_id = self.overlay_sink
        last = self.cfg.clicks.val_clicks
        for i in range(n):
            fig = overlay_figure(
                batch["image"][i, 0].float().cpu().numpy(),
                batch["target"][i, 0].cpu().numpy(),
                out.probs[i, 0].cpu().numpy(),
                out.clicks.coords[i].cpu().numpy(),
                out.clicks.labels[i].cpu().numpy(),
                f"step {self.global_step}, row {int(batch['row'][i])}, "
                f"Dice after {last} clicks {float(out.dice[-1, i]):.3f}",
            )
            client.log_figure(run_id, fig, f"overlays/step{self.global_step:07d}_{i}.png")
            plt.close(fig)

    def configure_optimizers(self) -> dict[str, Any]:
        optim = self.cfg.optim
        decoder_params = [
            *self.model.prompt_encoder.parameters(),
            *self.model.mask_decoder.parameters(),
        ]
        optimizer = torch.optim.AdamW(
            [
                {"params": list(self.model.image_encoder.parameters()), "lr": optim.lr},
                {"params": decoder_params, "lr": optim.lr * optim.decoder_lr_scale},
            ],
            lr=optim.lr,
            betas=optim.betas,
            weight_decay=optim.weight_decay,
        )
        total = max(self.cfg.trainer.max_steps, 1)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lr_factor(self.cfg.schedule, total)
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1},
        }
