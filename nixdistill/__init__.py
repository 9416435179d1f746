"""nixdistill: distil a VITS/VITS2 teacher into a small, fast Nix-TTS student."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("nixdistill")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
