"""The client's bearer token: ``--token-file`` is read as the server reads its ``--auth-token-file`` (one token per
line), and a token that gRPC cannot send as metadata is refused before any call, naming the problem."""

from __future__ import annotations

import re

import pytest
from service_helpers import run

from service.client import Client
from service.client.__main__ import main


def _token_file(path, text: str):
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_the_servers_own_token_file_works_for_the_client_during_a_rotation(start_server, tmp_path, capsys):
    """Rotation step 1 adds the new token as a second line: a client given the same file sends the first token
    (the whole file, line break included, was refused by gRPC as invalid metadata)."""
    tokens = _token_file(tmp_path / "tokens", "old\n\n  new  \n")
    server = start_server(auth_token_file=tokens)
    assert main(["describe", "--target", server.target, "--token-file", str(tokens)]) == 0
    assert '"name": "tiny"' in capsys.readouterr().out
    assert main(["stream", "synthetic:2", "--target", server.target, "--token-file", str(tokens)]) == 0
    assert "2 frames from 2 synthetic frames: 2 results" in capsys.readouterr().err
    only_new = _token_file(tmp_path / "only-new", "  new\n")
    assert main(["describe", "--target", server.target, "--token-file", str(only_new)]) == 0, "any line is accepted"
    capsys.readouterr()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("two words\n", "the bearer token holds a space at position 3"),
        ("caf\u00e9\n", "the bearer token holds the character U+00E9 at position 3"),
    ],
)
def test_a_token_file_whose_first_token_cannot_be_sent_is_a_usage_error(tmp_path, capsys, text, problem):
    path = _token_file(tmp_path / "token", text)
    assert main(["describe", "--target", "127.0.0.1:1", "--token-file", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"error: --token-file {path}: {problem}" in err and "Traceback" not in err, err
    assert "two" not in err and "caf" not in err, "the token is never echoed"


def test_a_token_file_that_is_not_text_is_a_usage_error(tmp_path, capsys):
    path = tmp_path / "token"
    path.write_bytes(b"\xff\xfe\x00token")
    assert main(["describe", "--target", "127.0.0.1:1", "--token-file", str(path)]) == 2
    assert f"error: --token-file {path}: cannot read it as text" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["describe", "stream"])
def test_a_token_flag_with_a_line_break_is_a_usage_error(capsys, command):
    argv = [command, *(["synthetic:2"] if command == "stream" else []), "--target", "127.0.0.1:1"]
    assert main([*argv, "--token", "old\nnew"]) == 2
    err = capsys.readouterr().err
    assert "error: --token: the bearer token holds a line break at position 3" in err and "Traceback" not in err, err


@pytest.mark.parametrize(
    ("token", "problem"),
    [
        ("old\nnew", "a line break at position 3"),
        ("a\tb", "a tab at position 1"),
        ("ab\r", "a carriage return at position 2"),
        (" ab", "a space at position 0"),
        ("ab\x7f", "the character U+007F at position 2"),
    ],
)
def test_the_client_refuses_a_token_that_is_not_valid_metadata(token, problem):
    async def make() -> None:
        Client("127.0.0.1:1", token=token)

    with pytest.raises(ValueError, match=f"^the bearer token holds {re.escape(problem)}: a token is printable ASCII"):
        run(make())


def test_the_client_takes_every_printable_ascii_token(start_server):
    """Every character from ``!`` to ``~`` passes, and the server accepts the token."""
    token = "".join(chr(code) for code in range(ord("!"), ord("~") + 1))
    server = start_server(auth_token=token)

    async def describe() -> str:
        async with Client(server.target, token=token) as client:
            return (await client.describe()).name

    assert run(describe()) == "tiny"
