"""Teacher models (pure ``torch.nn``; import name ``nixdistill.teachers``).

VITS (Kim et al. 2021) and VITS2 (Kong et al. 2023) generators with their config dataclass.
Loading checkpoints and foreign formats lives in :mod:`nixdistill.teacher.loader`.
"""

from .vits import VITS, InferOutput, PosteriorOutput, PriorLatents, TrainOutput, VITSConfig

__all__ = ["VITS", "VITSConfig", "InferOutput", "PosteriorOutput", "PriorLatents", "TrainOutput"]
