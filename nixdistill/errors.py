"""User-facing errors. The CLI prints these as one clear line and exits non-zero, without a
traceback; anything else is a bug and keeps its traceback."""


class NixdistillError(Exception):
    """Base class for errors caused by user input (files, configs, text, arguments)."""


class ConfigError(NixdistillError, ValueError):
    """A config file or value is invalid; the message names the file, key and reason."""


class LossError(NixdistillError, ValueError):
    """A loss or spectral feature cannot be computed for these settings (e.g. an STFT longer
    than the segment)."""


class TeacherError(NixdistillError):
    """A teacher reference cannot be resolved or loaded; the message names the file (and, for a
    Piper graph that cannot be rebuilt, the module and why)."""
