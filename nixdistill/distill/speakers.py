"""Which of a multi-speaker teacher's speakers a student learns, and who says each sentence.

A student learns a set of the teacher's speakers (all by default, or the ones ``--speakers``
names by id or by ``speaker_id_map`` name). Student speaker ``i`` is teacher speaker
``teacher_ids[i]``; a set of one gives a single-speaker student.

With text-only data (prior latents) the teacher renders every sentence for one speaker of the
set, drawn balanced (counts differ by at most one) and seeded, so that every row of the
student's speaker embedding is trained. The draw is part of the latent cache's identity, so a
cache of another draw is refused. Data that names its speakers (a multi-speaker filelist)
keeps them, restricted to the set.

Utterances carry *teacher* speaker ids (``Utterance.speaker``, ``Batch.sid``); stages map them
to student ids with :meth:`SpeakerSet.student_sid`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from nixdistill.errors import ConfigError

__all__ = ["SpeakerSet", "assign_speakers", "choose_speakers"]


@dataclass(frozen=True)
class SpeakerSet:
    """The teacher speakers a student learns.

    Attributes:
        teacher_ids: teacher speaker id of each student speaker (student id = index).
        names: the name of each student speaker (the teacher's ``speaker_id_map`` name, or
            the teacher id as a string).
    """

    teacher_ids: tuple[int, ...]
    names: tuple[str, ...]

    @property
    def n_speakers(self) -> int:
        """Speakers of the student model: 0 (single speaker) or the set's size (> 1)."""
        return len(self.teacher_ids) if len(self.teacher_ids) > 1 else 0

    @property
    def speaker_id_map(self) -> dict[str, int]:
        """Student speaker names -> student ids (Piper's ``speaker_id_map``); empty for one."""
        return {n: i for i, n in enumerate(self.names)} if self.n_speakers else {}

    def student_sid(self, teacher_sid: torch.Tensor | None) -> torch.Tensor | None:
        """Student speaker ids [B] for teacher speaker ids [B]; None for a single speaker."""
        if teacher_sid is None or not self.n_speakers:
            return None
        lookup = torch.full((max(self.teacher_ids) + 1,), -1, dtype=torch.long,
                            device=teacher_sid.device)
        lookup[list(self.teacher_ids)] = torch.arange(len(self.teacher_ids),
                                                      device=teacher_sid.device)
        return lookup[teacher_sid]

    def to_dict(self) -> dict[str, Any]:
        """``{"teacher_ids": [...], "names": [...]}`` (JSON lists)."""
        return {"teacher_ids": list(self.teacher_ids), "names": list(self.names)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SpeakerSet":
        return cls(tuple(int(i) for i in d["teacher_ids"]), tuple(str(n) for n in d["names"]))


def choose_speakers(n_teacher_speakers: int, speaker_id_map: dict[str, int],
                    requested: str | Sequence[str] | None = None) -> SpeakerSet:
    """The speaker set of ``--speakers`` (comma-separated ids or names; None: all).

    Args:
        n_teacher_speakers: the teacher's speakers (0 or 1: single speaker).
        speaker_id_map: the teacher's names -> ids (may be empty).
        requested: ``"0,3"``, ``"p225,p226"``, a list of those, or None.
    Returns:
        the set, in the order given (all speakers in id order by default).
    Raises:
        ConfigError: speakers for a single-speaker teacher, an unknown name, an id out of
            range, or a speaker named twice.
    """
    names_of = {v: k for k, v in speaker_id_map.items()}
    if n_teacher_speakers <= 1:
        if requested:
            raise ConfigError("--speakers: the teacher has a single speaker")
        return SpeakerSet((0,), ("0",))
    if requested is None or requested == "":
        ids = list(range(n_teacher_speakers))
    else:
        items = requested.split(",") if isinstance(requested, str) else list(requested)
        ids = []
        for item in (str(i).strip() for i in items if str(i).strip()):
            if item in speaker_id_map:
                ids.append(int(speaker_id_map[item]))
            elif item.isdigit() and int(item) < n_teacher_speakers:
                ids.append(int(item))
            else:
                known = ", ".join(list(speaker_id_map)[:8]) or f"ids 0-{n_teacher_speakers - 1}"
                raise ConfigError(f"--speakers: the teacher has no speaker {item!r} ({known}"
                                  f"{', ...' if len(speaker_id_map) > 8 else ''})")
        if len(set(ids)) != len(ids):
            raise ConfigError(f"--speakers names a speaker twice: {requested}")
    return SpeakerSet(tuple(ids), tuple(names_of.get(i, str(i)) for i in ids))


def assign_speakers(utterances: list[Any], speakers: SpeakerSet, seed: int,
                    text_only: bool) -> tuple[list[Any], dict[str, Any]]:
    """Give every utterance the teacher speaker who says it.

    Args:
        utterances: :class:`~nixdistill.data.Utterance` items.
        speakers: the set the student learns.
        seed: the draw's seed.
        text_only: draw the speakers (text-only data); otherwise keep each utterance's own
            speaker and drop those outside the set.
    Returns:
        (utterances with ``speaker`` = teacher id, the draw's identity for the latent cache:
        ``{"teacher_ids", "seed", "counts", "sha1"}``: utterances per teacher speaker, and a hash
        of every utterance's speaker).
    """
    if text_only:
        k = len(speakers.teacher_ids)
        order = [speakers.teacher_ids[i % k] for i in range(len(utterances))]
        random.Random(seed).shuffle(order)
        out = [dataclasses.replace(u, speaker=s) for u, s in zip(utterances, order)]
    else:
        chosen = set(speakers.teacher_ids)
        out = [u for u in utterances if int(u.speaker) in chosen]
    digest = hashlib.sha1(json.dumps([[u.utt_id, int(u.speaker)] for u in out]).encode())
    counts = Counter(int(u.speaker) for u in out)
    return out, {"teacher_ids": list(speakers.teacher_ids), "seed": int(seed),
                 "counts": {str(s): counts[s] for s in speakers.teacher_ids},
                 "sha1": digest.hexdigest()}
