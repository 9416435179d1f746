"""Teacher latents ``z`` for distillation: posterior ``q(z | audio)`` or prior ``flow⁻¹`` samples.

Two sources:

- **posterior**: ``z ~ q(z | spec)`` from the teacher's ``enc_q`` on real audio (the Nix-TTS
  paper's setting, Chevi et al. 2022 §3.2). Needs a teacher with ``enc_q`` and a dataset with
  audio. ``T_frames`` is that of the real audio; the aligner queries are its log-mel.
- **prior**: ``z = flow⁻¹(m_p + ε·exp(logs_p))`` expanded with the teacher's own durations, from
  text only (Piper voices have no ``enc_q``). The teacher's own audio ``dec(z)`` is synthesised
  too, and its log-mel (with the teacher's :class:`~nixdistill.config.AudioConfig`) gives the
  aligner queries, so every tensor has the same ``T_frames``.

Sampling is reproducible for a given ``torch.Generator`` (or integer seed). An optional
on-disk cache (:class:`LatentCache`) stores one safetensors file per utterance id.

The package holds the settings (:mod:`.settings`), the sampling (:mod:`.sampling`) and the
on-disk cache (:mod:`.cache`).
"""

from nixdistill.distill.latents.cache import (LatentCache, fill_latent_cache, open_latent_cache,
                                              teacher_description, teacher_fingerprint)
from nixdistill.distill.latents.sampling import teacher_latents
from nixdistill.distill.latents.settings import (LATENT_SOURCES, LatentBatch, LatentError,
                                                 LatentSettings, choose_latent_source,
                                                 resolve_latent_settings)

__all__ = [
    "LATENT_SOURCES", "LatentError", "LatentBatch", "LatentSettings", "LatentCache",
    "choose_latent_source", "fill_latent_cache", "open_latent_cache", "resolve_latent_settings",
    "teacher_description", "teacher_fingerprint", "teacher_latents",
]
