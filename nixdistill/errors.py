"""User-facing errors. The CLI prints these as one clear line and exits non-zero, without a
traceback; anything else is a bug and keeps its traceback."""


class NixdistillError(Exception):
    """Base class for errors caused by user input (files, configs, text, arguments)."""
