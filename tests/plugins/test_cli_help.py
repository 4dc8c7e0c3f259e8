"""Every command's ``--help`` opens with a description in plain text, taken from its module docstring without the
usage line argparse prints itself and without the docstring's reST markup."""

from __future__ import annotations

import importlib

import pytest

from plugins.cli_help import command_description, plain_text

COMMANDS = [
    "plugins.__main__",
    "service.demo",
    "service.protogen",
    "service.client.__main__",
    "service.extract",
    "service.bench.load",
    "service.bench.agreement",
    "service.bench.local",
    "service.bench.soak",
    "training.run",
    "training.evaluate",
    "training.datasets.__main__",
    "training.export.__main__",
    "training.ceiling",
    "training.model_card",
    "training.object_recall",
]


def test_markup_becomes_what_sphinx_shows():
    marked = ":func:`~service.client.stream_frames`, :class:`ModelCard`, :mod:`a.b`, :meth:`go <a.B.go>`, ``x --y``"
    assert plain_text(marked) == "stream_frames, ModelCard, a.b, go, x --y"


def test_the_description_is_the_first_paragraphs_without_the_usage():
    docstring = """``python -m tool --flag``: do the thing
    with ``care``.

    More about :class:`~a.Thing`.
    """
    assert command_description(docstring) == "Do the thing with care."
    assert command_description(docstring, paragraphs=2) == "Do the thing with care. More about Thing."
    assert command_description(None) == ""


@pytest.mark.parametrize("module_name", COMMANDS)
def test_help_shows_no_markup(module_name, capsys):
    module = importlib.import_module(module_name)
    with pytest.raises(SystemExit) as exited:
        module.main(["--help"])
    assert exited.value.code == 0
    help_text = capsys.readouterr().out
    assert help_text.startswith("usage:") and "``" not in help_text and ":func:`" not in help_text, help_text
    description = help_text.split("\n\n")[1]
    assert description[:1].isupper() and not description.startswith("python -m"), description
