"""The description a command's ``--help`` shows, taken from its module docstring (:func:`command_description`), so
the two say the same thing without the help text showing the docstring's markup."""

from __future__ import annotations

import re

_USAGE = re.compile(r"^``[^`]*``:\s*")
"""A docstring's leading usage (``python -m X --flag``: ...), which argparse's own usage line replaces."""

_ROLE = re.compile(r":[a-z]+:`(~?)([^`<]*?)\s*(?:<[^>]*>)?`")
"""A Sphinx cross-reference (:func:`~a.b.c`, :class:`Name`, :mod:`a.b`, :meth:`text <target>`)."""

_LITERAL = re.compile(r"``([^`]*)``")
"""Inline literal markup: ``text``."""


def plain_text(text: str) -> str:
    """``text`` without reST inline markup: ````x```` becomes ``x``, :role:`a.b` becomes ``a.b`` and :role:`~a.b`
    ``b`` (as Sphinx shows them)."""
    without_roles = _ROLE.sub(lambda match: match[2].rsplit(".", 1)[-1] if match[1] else match[2], text)
    return _LITERAL.sub(r"\1", without_roles)


def command_description(docstring: str | None, paragraphs: int = 1) -> str:
    """The first ``paragraphs`` paragraphs of a command module's ``docstring``, joined into one line, without the
    usage it may start with (argparse prints its own) and without reST markup (:func:`plain_text`); the first letter
    capitalised."""
    kept = re.split(r"\n\s*\n", (docstring or "").strip())[:paragraphs]
    text = " ".join(line.strip() for paragraph in kept for line in paragraph.splitlines())
    description = plain_text(_USAGE.sub("", text))
    return description[:1].upper() + description[1:]


__all__ = ["command_description", "plain_text"]
