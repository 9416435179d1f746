"""Layers and helpers shared by the model packages ``teachers/`` and ``students/``.

Both model packages import from here; neither imports the other, nor the application modules
above them (see ``tests/test_layering.py``). Everything here is pure ``torch`` (no files, no
loggers, no global config).
"""

from . import config as _config
from . import durations as _durations
from . import flows as _flows
from . import hifigan as _hifigan
from . import layers as _layers
from .config import check_upsampling, from_dict
from .durations import durations_to_path, expand_by_durations, frame_token_index
from .flows import ElementwiseAffine, Flip, FlowOutput
from .hifigan import ConvFactory, ResBlock1, ResBlock2, hifigan_upsample, weight_norm_conv1d
from .layers import (INIT_STD, LRELU_SLOPE, folded_state_dict, get_padding, init_weights,
                     remove_weight_norm, sequence_mask)

__all__ = [*_config.__all__, *_durations.__all__, *_flows.__all__, *_hifigan.__all__,
           *_layers.__all__]
