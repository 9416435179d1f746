"""Small layer helpers shared by the teacher and student models.

Sources: jaywalnut310/vits ``commons.py`` (``sequence_mask``, ``get_padding``,
``init_weights``) and jik876/hifi-gan (``LRELU_SLOPE``). Weight norm is
``torch.nn.utils.parametrizations.weight_norm`` (state-dict keys
``parametrizations.weight.original0/original1``).
"""

from __future__ import annotations

from typing import TypeVar

import torch
from torch import nn
from torch.nn.utils import parametrize

__all__ = [
    "LRELU_SLOPE",
    "INIT_STD",
    "sequence_mask",
    "get_padding",
    "init_weights",
    "remove_weight_norm",
    "folded_state_dict",
]

#: Leaky-ReLU slope of HiFi-GAN generators and discriminators (jik876/hifi-gan ``LRELU_SLOPE``).
LRELU_SLOPE = 0.1
#: Standard deviation of the normal init of HiFi-GAN convolutions (jaywalnut310/vits).
INIT_STD = 0.01

ModuleT = TypeVar("ModuleT", bound=nn.Module)


def sequence_mask(lengths: torch.Tensor, max_length: int | None = None) -> torch.Tensor:
    """Boolean mask of valid positions.

    Args:
        lengths: valid lengths, [B], integer or float.
        max_length: padded length ``T``; defaults to ``lengths.max()``.
    Returns:
        mask: [B, T], bool, ``mask[b, t] = t < lengths[b]``.
    """
    if max_length is None:
        max_length = int(lengths.max())
    positions = torch.arange(max_length, dtype=lengths.dtype, device=lengths.device)
    return positions.unsqueeze(0) < lengths.unsqueeze(1)


def get_padding(kernel_size: int, dilation: int = 1) -> int:
    """'Same' padding of a convolution with an odd ``kernel_size`` at ``dilation``, in steps."""
    return (kernel_size * dilation - dilation) // 2


def init_weights(module: nn.Module, mean: float = 0.0, std: float = INIT_STD) -> None:
    """Normal init of every ``Conv*`` weight (HiFi-GAN / VITS ``init_weights``), for ``apply``.

    With weight norm it draws ``v`` and sets ``g = ||v||``, so the effective weight equals ``v``.
    """
    if "Conv" not in type(module).__name__:
        return
    if hasattr(module, "parametrizations") and "weight" in module.parametrizations:
        v = module.parametrizations.weight.original1
        v.data.normal_(mean, std)
        dims = tuple(range(1, v.dim()))
        module.parametrizations.weight.original0.data.copy_(
            torch.linalg.vector_norm(v.data, dim=dims, keepdim=True)
        )
    else:
        module.weight.data.normal_(mean, std)


def remove_weight_norm(module: ModuleT) -> ModuleT:
    """Fold every weight norm in ``module`` into a plain ``weight``, in place.

    Returns:
        the same module, ready for inference or export.
    """
    for m in module.modules():
        if parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
    return module


def folded_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict ``module`` would have after :func:`remove_weight_norm`, without mutating it.

    (``parametrize.remove_parametrizations`` on a deep copy breaks the original in torch 2.x,
    so export folds the weights this way.)
    """
    state = dict(module.state_dict())
    for name, m in module.named_modules():
        if parametrize.is_parametrized(m, "weight"):
            prefix = f"{name}." if name else ""
            for key in [k for k in state if k.startswith(f"{prefix}parametrizations.weight.")]:
                del state[key]
            state[f"{prefix}weight"] = m.weight.detach()
    return state
