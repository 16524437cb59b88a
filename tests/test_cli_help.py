"""Every option and argument of every `dialer` command has help text, and a group's help names each of its
commands (issue 22: five `set` options had none; the campaign group's help named four of its commands)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import typer
from typer.testing import CliRunner

from campaigns.call_options import machine_detection_mode
from workers.entrypoints.cli import app

runner = CliRunner()


def commands(group: Any, path: str = "dialer") -> Iterator[tuple[str, Any]]:
    """Every command under a Typer group (Typer's own click), with its path."""
    for name, command in group.commands.items():
        yield f"{path} {name}", command
        if hasattr(command, "commands"):
            yield from commands(command, f"{path} {name}")


ROOT: Any = typer.main.get_command(app)


def test_every_option_and_argument_has_help() -> None:
    missing = [f"{path} {' / '.join(param.opts)}"
               for path, command in commands(ROOT) for param in command.params
               if not getattr(param, "help", None) and param.name != "help"]
    assert missing == []


def test_every_command_has_a_summary() -> None:
    assert [path for path, command in commands(ROOT) if not command.help] == []


def test_the_campaign_group_help_names_each_of_its_commands() -> None:
    campaign = ROOT.commands["campaign"]
    assert campaign.help
    assert [name for name in campaign.commands if name not in campaign.help] == []


def test_hidden_old_names_still_work_but_are_not_shown() -> None:
    shown = runner.invoke(app, ["campaign", "rejects", "--help"], terminal_width=200)
    assert "--out" in shown.stdout and "--csv" not in shown.stdout
    account = runner.invoke(app, ["account", "add", "--help"], terminal_width=200)
    assert "--timezone" in account.stdout and "--time-zone" not in account.stdout


def test_machine_detection_help_names_every_value_its_error_accepts() -> None:
    options = ROOT.commands["campaign"].commands["set"].params
    option = next(p for p in options if p.name == "machine_detection")
    try:
        machine_detection_mode({"machine_detection": "sometimes"})
    except ValueError as exc:
        accepted = re.findall(r"\b(true|hangup|false)\b", str(exc))
    assert sorted(accepted) == ["false", "hangup", "true"]
    assert all(re.search(rf"\b{word}\b", option.help) for word in accepted), option.help


def test_dialer_version_is_the_package_version() -> None:
    from importlib.metadata import version

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"dialer {version('dialer')}"
