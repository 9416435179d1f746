"""CLI shell: --help lists the stages, --version, user errors are clean."""

import shutil
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from nixdistill import __version__
from nixdistill.cli import COMMANDS, cli


def test_version():
    r = CliRunner().invoke(cli, ["--version"])
    assert r.exit_code == 0 and __version__ in r.output


def test_help_lists_every_command_and_each_module_defines_it():
    import importlib
    import re

    import click

    r = CliRunner().invoke(cli, ["--help"])
    assert r.exit_code == 0
    section = r.output.split("Commands:")[1] if "Commands:" in r.output else ""
    listed = set(re.findall(r"^  ([a-z-]+)\s", section, re.M))
    assert listed == set(COMMANDS)
    for mod in COMMANDS.values():
        assert isinstance(importlib.import_module(f"nixdistill.commands.{mod}").command,
                          click.Command)


def test_console_script_runs(tmp_path):
    exe = shutil.which("nixdistill") or str(Path(sys.executable).with_name("nixdistill"))
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, check=False,
                         cwd=tmp_path)
    assert out.returncode == 0 and "Usage" in out.stdout
