"""The ``nixdistill`` command line.

Each command lives in its own module under ``nixdistill/commands/`` and is loaded lazily, so
``nixdistill synthesize`` never imports the teacher code and ``--help`` stays fast. A command
module defines one Click command named ``command`` that parses arguments, calls one library
function and prints a summary (lhotse style).
"""

from __future__ import annotations

import importlib
import sys

import click

from . import __version__
from .errors import NixdistillError

# command name -> module under nixdistill.commands
COMMANDS: dict[str, str] = {
    "prepare": "prepare",
    "teach": "teach",
    "distil-encoder": "distil_encoder",
    "distil-decoder": "distil_decoder",
    "export": "export",
    "synthesize": "synthesize",
    "benchmark": "benchmark",
    "pipeline": "pipeline",
}


class LazyGroup(click.Group):
    """Imports a command's module only when that command runs (or its help is shown)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        mod = COMMANDS.get(name)
        if mod is None:
            return None
        return importlib.import_module(f"nixdistill.commands.{mod}").command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nixdistill")
@click.option("--device", default="auto", show_default=True,
              help="torch device: auto (cuda if available, else cpu), cpu, cuda, cuda:1 ...")
@click.option("--seed", type=int, default=None, help="Override the config's random seed.")
@click.pass_context
def cli(ctx: click.Context, device: str, seed: int | None) -> None:
    """Distil a VITS/VITS2 teacher into a small, fast Nix-TTS student."""
    ctx.ensure_object(dict)
    # synthesize resolves "auto" itself: its onnxruntime path must never import torch.
    ctx.obj["device"] = device if ctx.invoked_subcommand == "synthesize" else resolve_device(device)
    ctx.obj["seed"] = seed


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; other strings pass through."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: user errors become one line on stderr and exit code 2."""
    try:
        cli.main(args=argv, prog_name="nixdistill", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except NixdistillError as e:
        click.secho(f"Error: {e}", fg="red", err=True)
        sys.exit(2)
    except FileNotFoundError as e:
        click.secho(f"Error: {e}", fg="red", err=True)
        sys.exit(2)
