"""A Piper voice as a static web page that speaks offline in the browser.

:func:`export_web` writes a folder to serve as it is (``python -m http.server``; browsers do not
run module workers or WASM from ``file://``)::

    DIR/index.html, app.js, style.css      the page (nixdistill/resources/web)
    DIR/ort/                               onnxruntime-web: runs the voice graph (WASM backend)
    DIR/piper/                             piper-tts-web's piper_phonemize WASM + espeak-ng-data
                                           and its phonemizer worker: the voice's phoneme ids
    DIR/voices/<name>.onnx(.json)          the student as a Piper voice (and its teacher)
    DIR/voices.json                        what the page offers: name, role, url, size
    DIR/THIRD_PARTY.txt                    the npm packages, versions and licences shipped

No file comes from a CDN: onnxruntime-web and piper-tts-web are the versions pinned in
``nixdistill/resources/web/package-lock.json``, installed once with ``npm ci --ignore-scripts``
(no install scripts, so nothing is downloaded beyond the registry tarballs) into
``$XDG_CACHE_HOME/nixdistill/web/npm-<hash of the lock>`` and reused; only the files the page
loads are kept there.

The page's JavaScript API (``window.piperPage``, see ``app.js``) lets tests and scripts read back
the phoneme ids and samples it computes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

from nixdistill.errors import NixdistillError

__all__ = ["WebError", "WebPage", "PAGE_FILES", "RUNTIME_FILES", "web_cache_dir",
           "npm_runtime", "export_web"]


class WebError(NixdistillError, RuntimeError):
    """The web page cannot be written (no npm, a failed install, no Piper teacher, ...)."""


class WebPage(NamedTuple):
    """What :func:`export_web` wrote."""

    index: Path
    voices: tuple[Path, ...]   # each voice's .onnx, the student first
    size_bytes: int            # every file of the folder: what a browser downloads at most


#: The page itself, copied from ``nixdistill/resources/web``.
PAGE_FILES = ("index.html", "app.js", "style.css")

#: Runtime files of the page -> their path inside ``node_modules``.
RUNTIME_FILES = {
    "ort/ort.wasm.min.js": "onnxruntime-web/dist/ort.wasm.min.js",
    "ort/ort-wasm-simd-threaded.mjs": "onnxruntime-web/dist/ort-wasm-simd-threaded.mjs",
    "ort/ort-wasm-simd-threaded.wasm": "onnxruntime-web/dist/ort-wasm-simd-threaded.wasm",
    "piper/PhonemizeWebWorker.js": "piper-tts-web/dist/worker/PhonemizeWebWorker.js",
    "piper/piper_phonemize.wasm": "piper-tts-web/dist/piper/piper_phonemize.wasm",
    "piper/piper_phonemize.data": "piper-tts-web/dist/piper/piper_phonemize.data",
}
#: npm packages whose name, version and licence go into ``THIRD_PARTY.txt``.
_SHIPPED_PACKAGES = ("onnxruntime-web", "piper-tts-web")
_NOTICE_NAME = "THIRD_PARTY.txt"
_COMPLETE_MARKER = "COMPLETE"
_NPM_TIMEOUT_S = 900
_NPM_ARGS = ("ci", "--ignore-scripts", "--no-audit", "--no-fund", "--omit=optional")
_VOICES_DIR = "voices"


def _resource_dir() -> Path:
    return Path(str(resources.files("nixdistill.resources"))) / "web"


def web_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/nixdistill/web`` (``~/.cache/nixdistill/web`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "nixdistill" / "web"


def _lock_key(folder: Path) -> str:
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        digest.update((folder / name).read_bytes())
    return digest.hexdigest()[:12]


def npm_runtime(cache_dir: str | Path | None = None) -> Path:
    """The page's runtime files (:data:`RUNTIME_FILES`), installed with npm once and cached.

    Args:
        cache_dir: where installs are kept; default :func:`web_cache_dir`. One folder per
            version of ``package-lock.json``, ``npm-<sha256[:12]>``, holding only the runtime
            files and ``THIRD_PARTY.txt`` (npm's ``node_modules``, ~0.7 GB, is deleted).
    Returns:
        the folder; ``folder / key`` is each file of :data:`RUNTIME_FILES`.
    Raises:
        WebError: npm is not on PATH, ``npm ci`` fails (e.g. offline with an empty npm cache),
            or a pinned package lacks a file the page needs.
    """
    spec = _resource_dir()
    root = Path(cache_dir) if cache_dir is not None else web_cache_dir()
    target = root / f"npm-{_lock_key(spec)}"
    if (target / _COMPLETE_MARKER).is_file():
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise WebError("npm is not installed: --format web installs onnxruntime-web and "
                       "piper-tts-web with npm (Node.js >= 18), e.g. `apt-get install npm`")
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".npm-", dir=root))
    try:
        for name in ("package.json", "package-lock.json"):
            shutil.copy2(spec / name, work / name)
        try:
            proc = subprocess.run([npm, *_NPM_ARGS], cwd=work, capture_output=True, text=True,
                                  timeout=_NPM_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise WebError(f"npm ci did not finish within {_NPM_TIMEOUT_S} s") from None
        if proc.returncode != 0:
            lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
            detail = lines[-1] if lines else f"exit code {proc.returncode}"
            raise WebError(f"npm ci of the web page's packages failed: {detail}")
        modules = work / "node_modules"
        staging = work / "runtime"
        for dest, src in RUNTIME_FILES.items():
            if not (modules / src).is_file():
                raise WebError(f"the npm package lacks {src}: package-lock.json and "
                               "RUNTIME_FILES disagree")
            (staging / dest).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(modules / src, staging / dest)
        (staging / _NOTICE_NAME).write_text(_third_party_notice(modules), encoding="utf-8")
        (staging / _COMPLETE_MARKER).write_text("npm " + " ".join(_NPM_ARGS) + "\n")
        try:
            os.replace(staging, target)
        except OSError:  # another process installed it meanwhile
            if not (target / _COMPLETE_MARKER).is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def _third_party_notice(modules: Path) -> str:
    lines = ["Third-party files of this page (installed with npm from package-lock.json):", ""]
    for name in _SHIPPED_PACKAGES:
        meta = json.loads((modules / name / "package.json").read_text(encoding="utf-8"))
        lines.append(f"{name} {meta.get('version')}  licence: {meta.get('license')}  "
                     f"{(meta.get('repository') or {}).get('url', '')}".rstrip())
    lines += ["", "piper/piper_phonemize.data holds espeak-ng's data (espeak-ng: GPL-3.0-or-later)",
              "and piper/piper_phonemize.wasm is piper-phonemize with espeak-ng compiled to WASM.",
              ""]
    return "\n".join(lines)


def _read_config(onnx_path: Path) -> dict[str, Any]:
    config_path = onnx_path.with_name(onnx_path.name + ".json")
    try:
        return json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WebError(f"{config_path}: not a readable voice config ({e})") from None


def _copy_voice(onnx_path: Path, folder: Path, int8: bool) -> Path:
    """Copy a Piper voice (and its .onnx.json) into ``folder``; with ``int8`` quantize the copy."""
    config = _read_config(onnx_path)
    name = onnx_path.name
    if int8:
        name = name.removesuffix(".onnx") + "_int8.onnx"
    out = folder / name
    shutil.copy2(onnx_path, out)
    if int8:
        from nixdistill.deploy.int8 import quantize_int8

        record = quantize_int8(out)
        config.setdefault("nixdistill", {})["quantization"] = record
    out.with_name(out.name + ".json").write_text(json.dumps(config, indent=2, ensure_ascii=False),
                                                 encoding="utf-8")
    return out


def _teacher_voice(config: dict[str, Any]) -> Path:
    """The teacher's Piper ``.onnx`` a student voice config records."""
    teacher = (config.get("nixdistill") or {}).get("teacher") or {}
    source = teacher.get("source")
    if teacher.get("kind") != "piper" or not source:
        raise WebError("--with-teacher needs a student of a Piper voice teacher; this one's "
                       f"teacher is {teacher.get('kind') or 'unknown'!s} ({source or 'no file'})")
    path = Path(str(source))
    if not path.is_file() or not path.with_name(path.name + ".json").is_file():
        raise WebError(f"--with-teacher: the teacher voice {path} (or its .onnx.json) is gone")
    return path


def _voice_entry(onnx_path: Path, root: Path, role: str) -> dict[str, Any]:
    config = _read_config(onnx_path)
    quant = (config.get("nixdistill") or {}).get("quantization")
    return {"name": onnx_path.name.removesuffix(".onnx"), "role": role,
            "url": onnx_path.relative_to(root).as_posix(),
            "bytes": onnx_path.stat().st_size, "sample_rate": config["audio"]["sample_rate"],
            "int8": bool(quant)}


def export_web(out_dir: str | Path, student: str | Path | None = None,
               voice: str | Path | None = None, teacher_config: str | Path | None = None,
               int8: bool = False, with_teacher: bool = False,
               cache_dir: str | Path | None = None) -> WebPage:
    """Write a static page that speaks the student (one Piper voice) in the browser.

    Args:
        out_dir: the folder to write (created; files of an earlier export are replaced).
        student: a ``student.safetensors``, exported here as a Piper voice
            (:func:`~nixdistill.deploy.piper_voice.export_piper`), or
        voice: a Piper voice ``.onnx`` (with its ``.onnx.json``) to copy; give exactly one.
        teacher_config: with ``student``: the teacher voice's ``.onnx.json``
            (see :func:`~nixdistill.deploy.piper_voice.export_piper`).
        int8: int8 MatMul weights for the student's graph (a copy, with ``voice``).
        with_teacher: also put the teacher voice on the page, when the student's teacher was
            a Piper voice whose ``.onnx`` is still where the student records it.
        cache_dir: npm install cache (:func:`npm_runtime`).
    Returns:
        WebPage(index, voices, size_bytes).
    Raises:
        WebError: see :func:`npm_runtime`; both or neither of ``student`` / ``voice``; no Piper
        teacher for ``with_teacher``. OnnxExportError, StudentFileError: from the Piper export.
    """
    if (student is None) == (voice is None):
        raise WebError("give a student (student.safetensors) or a Piper voice (.onnx), not "
                       "both or neither")
    runtime = npm_runtime(cache_dir)
    out = Path(out_dir)
    voices_dir = out / _VOICES_DIR
    if voices_dir.is_dir():
        shutil.rmtree(voices_dir)
    voices_dir.mkdir(parents=True)
    page = _resource_dir()
    for name in PAGE_FILES:
        shutil.copy2(page / name, out / name)
    for name in (*RUNTIME_FILES, _NOTICE_NAME):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(runtime / name, out / name)

    if student is not None:
        from nixdistill.deploy.piper_voice import export_piper

        student_voice = export_piper(student, f"{voices_dir}/", teacher_config, int8=int8).onnx
    else:
        student_voice = _copy_voice(Path(voice), voices_dir, int8)
    voices = [student_voice]
    entries = [_voice_entry(student_voice, out, "student")]
    if with_teacher:
        teacher = _teacher_voice(_read_config(student_voice))
        copied = _copy_voice(teacher, voices_dir, int8=False)
        voices.append(copied)
        entries.append(_voice_entry(copied, out, "teacher"))
    (out / "voices.json").write_text(json.dumps(entries, indent=2), encoding="utf-8")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return WebPage(out / "index.html", tuple(voices), size)
