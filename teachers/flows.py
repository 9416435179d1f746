"""The VITS normalising flow ``f: z -> z_p`` (and its VITS2 transformer-coupling variant).

Sources: jaywalnut310/vits ``models.ResidualCouplingBlock``; p0p4k/vits2_pytorch
``ResidualCouplingTransformersLayer`` (``transformer_flow_type="pre_conv"``): a small
transformer (no relative positions) refines the conditioning half before the WaveNet.
Layout: ``flows.{0,2,4,...}`` are couplings and the odd indices are :class:`Flip`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from nixdistill.nn import remove_weight_norm
from nixdistill.nn.flows import Flip

from .attentions import Encoder
from .modules import ResidualCouplingLayer


@dataclass(frozen=True)
class FlowTransformerSpec:
    """Shape of the VITS2 ``pre_transformer`` in each coupling (vits2_pytorch defaults).

    Its width and FFN width are both ``channels // 2``; it uses no relative positions.
    """

    n_heads: int = 2
    n_layers: int = 2
    kernel_size: int = 3
    p_dropout: float = 0.1


class TransformerCouplingLayer(ResidualCouplingLayer):
    """Mean-only coupling whose conditioner is ``WN(pre(x0 + Transformer(x0)))`` (VITS2)."""

    def __init__(self, channels: int, hidden_channels: int, kernel_size: int,
                 dilation_rate: int, n_layers: int, gin_channels: int = 0,
                 transformer: FlowTransformerSpec = FlowTransformerSpec()):
        super().__init__(channels, hidden_channels, kernel_size, dilation_rate, n_layers,
                         gin_channels=gin_channels, mean_only=True)
        half = channels // 2
        self.pre_transformer = Encoder(half, half, transformer.n_heads, transformer.n_layers,
                                       transformer.kernel_size, transformer.p_dropout,
                                       window_size=None)

    def conditioner(self, x0: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None):
        x0_ = self.pre_transformer(x0 * x_mask, x_mask) + x0  # residual around the transformer
        h = self.pre(x0_) * x_mask
        return self.enc(h, x_mask, g=g)


class ResidualCouplingBlock(nn.Module):
    """``n_flows`` mean-only couplings, each followed by a channel flip (volume preserving).

    Args:
        channels: latent channels (``inter_channels``).
        hidden_channels: WaveNet width.
        kernel_size / dilation_rate / n_layers: WaveNet shape of each coupling.
        n_flows: couplings.
        gin_channels: speaker conditioning channels (0: none).
        use_transformer: use VITS2 transformer couplings.
        transformer: their shape.
    """

    def __init__(self, channels: int, hidden_channels: int, kernel_size: int,
                 dilation_rate: int, n_layers: int, n_flows: int = 4, gin_channels: int = 0,
                 use_transformer: bool = False,
                 transformer: FlowTransformerSpec = FlowTransformerSpec()):
        super().__init__()
        self.flows = nn.ModuleList()
        for _ in range(n_flows):
            if use_transformer:
                layer = TransformerCouplingLayer(channels, hidden_channels, kernel_size,
                                                 dilation_rate, n_layers, gin_channels,
                                                 transformer)
            else:
                layer = ResidualCouplingLayer(channels, hidden_channels, kernel_size,
                                              dilation_rate, n_layers, gin_channels=gin_channels,
                                              mean_only=True)
            self.flows.append(layer)
            self.flows.append(Flip())

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None = None,
                reverse: bool = False) -> torch.Tensor:
        """Forward ``z -> z_p`` or, with ``reverse``, ``z_p -> z``.

        Args:
            x: [B, inter, T_frames]; x_mask: [B, 1, T_frames]; g: [B, gin, 1] or None.
        Returns:
            [B, inter, T_frames].
        """
        if not reverse:
            for flow in self.flows:
                x, _ = flow(x, x_mask, g=g, reverse=False)
        else:
            for flow in reversed(self.flows):
                x, _ = flow(x, x_mask, g=g, reverse=True)
        return x

    def remove_weight_norm(self) -> None:
        """Fold weight norm of every WaveNet convolution into plain weights."""
        remove_weight_norm(self)
