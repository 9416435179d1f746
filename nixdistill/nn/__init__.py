"""Layers and helpers shared by the model packages ``teachers/`` and ``students/``.

Both model packages import from here; neither imports the other, nor the application modules
above them (see ``tests/test_layering.py``). Everything here is pure ``torch`` (no files, no
loggers, no global config).
"""

from .config import check_upsampling, from_dict
from .durations import expand_by_durations, frame_token_index
from .hifigan import ConvFactory, ResBlock1, ResBlock2, hifigan_upsample, weight_norm_conv1d
from .layers import (INIT_STD, LRELU_SLOPE, folded_state_dict, get_padding, init_weights,
                     remove_weight_norm, sequence_mask)

__all__ = [
    "LRELU_SLOPE",
    "INIT_STD",
    "sequence_mask",
    "get_padding",
    "init_weights",
    "remove_weight_norm",
    "folded_state_dict",
    "ConvFactory",
    "weight_norm_conv1d",
    "ResBlock1",
    "ResBlock2",
    "hifigan_upsample",
    "frame_token_index",
    "expand_by_durations",
    "from_dict",
    "check_upsampling",
]
