"""A tiny regression stage for testing the shared training loop (and a torchrun smoke test).

``python -m torch.distributed.run --standalone --nproc_per_node 2 -m nixdistill.distill.toy
--run-dir RUN`` trains it with DDP on CPU (gloo) and writes each rank's final parameters to
``RUN/params_rank{R}.pt``, so a set-up can be checked before a long run.
"""

from __future__ import annotations

import argparse
import math
import os
from typing import Any, Iterable

import torch
from torch import nn
from torch.utils.data import Dataset, default_collate

from nixdistill.config import TrainConfig
from nixdistill.distill.context import StepContext
from nixdistill.distill.loop import Trainer
from nixdistill.distill.stage import Stage

__all__ = ["ToyDataset", "ToyStage", "main"]


class ToyDataset(Dataset):
    """``n_items`` random (x [n_features], y [1]) pairs drawn from a fixed seed; every item has
    length 1 for the bucket sampler."""

    def __init__(self, n_items: int = 64, n_features: int = 8, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n_items, n_features, generator=g)
        w = torch.randn(n_features, 1, generator=g)
        self.y = self.x @ w + 0.1 * torch.randn(n_items, 1, generator=g)
        self.lengths = [1] * n_items

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]


class ToyStage(Stage):
    """MLP with dropout on random regression data; records every training loss.

    Args:
        train_cfg: loop settings (batch_size, seed, ...).
        nan_at_steps: step indices (``ctx.step``) at which the loss is replaced by NaN.
    """

    name = "toy"
    collate_fn = staticmethod(default_collate)
    averaged = ("net",)

    def __init__(self, train_cfg: TrainConfig, n_items: int = 64, n_features: int = 8,
                 hidden: int = 16, nan_at_steps: tuple[int, ...] = ()):
        super().__init__(train_cfg)
        torch.manual_seed(train_cfg.seed)
        self.net = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Dropout(0.5),
                                 nn.Linear(hidden, 1))
        self.train_set = ToyDataset(n_items, n_features, seed=train_cfg.seed)
        self.nan_at_steps = set(nan_at_steps)
        self.losses: list[float] = []
        self.evaluations = 0
        self.last_eval: dict[str, float] = {}

    def modules(self) -> dict[str, nn.Module]:
        return {"net": self.net}

    def optimized(self) -> dict[str, Iterable[nn.Parameter]]:
        return {"net": self.net.parameters()}

    def training_step(self, batch: Any, ctx: StepContext) -> dict[str, Any]:
        x, y = batch
        with ctx.autocast():
            pred = ctx.model("net")(x)
        loss = nn.functional.mse_loss(pred.float(), y)
        if ctx.step in self.nan_at_steps:
            loss = loss * math.nan
        ctx.optimize("net", loss)
        self.losses.append(float(loss.detach()))
        return {"loss": loss.detach()}

    def evaluate(self, ctx: StepContext) -> dict[str, float]:
        self.evaluations += 1
        pred = self.net(self.train_set.x)
        self.last_eval = {"mse": float(nn.functional.mse_loss(pred, self.train_set.y))}
        return self.last_eval

    def state_dict(self) -> dict[str, Any]:
        return {"evaluations": self.evaluations}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.evaluations = int(d["evaluations"])


def main(argv: list[str] | None = None) -> None:
    """Train the toy stage (under torchrun or alone) and dump each rank's parameters."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--run-dir", required=True)
    p.add_argument("--max-steps", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=4)
    args = p.parse_args(argv)
    cfg = TrainConfig(batch_size=args.batch_size, max_steps=args.max_steps, log_interval=1,
                      eval_interval=1000, checkpoint_interval=1000)
    stage = ToyStage(cfg)
    result = Trainer(stage, args.run_dir, cfg, device="cpu").fit()
    rank = int(os.environ.get("RANK", "0"))
    torch.save({"step": result.step, "params": stage.net.state_dict(), "losses": stage.losses},
               f"{args.run_dir}/params_rank{rank}.pt")


if __name__ == "__main__":
    main()
