"""Bearer tokens from a file that changes while the server runs: one token per line, taken up again on change."""

from __future__ import annotations

import logging
import time

import grpc
import pytest
from service_helpers import run

from service.client import Client, StreamError
from service.tokens import TokenFile


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _rewrite(path, text: str) -> None:
    """Replace the file as a Secret update does: a new file renamed over the old (a new inode)."""
    fresh = path.with_suffix(".new")
    fresh.write_text(text)
    fresh.replace(path)


def test_the_token_file_is_taken_up_again_when_it_changes_and_looked_at_once_a_second(tmp_path):
    path = tmp_path / "tokens"
    path.write_text("old\n")
    clock = Clock()
    tokens = TokenFile(path, check_every_s=1.0, clock=clock)
    assert tokens.current() == (b"old",)
    _rewrite(path, "new\n\n  old  \n")
    clock.now = 0.5
    assert tokens.current() == (b"old",), "not looked at again within the second"
    clock.now = 1.0
    assert tokens.current() == (b"new", b"old") and tokens.reloads == 1
    clock.now = 2.0
    assert tokens.current() == (b"new", b"old") and tokens.reloads == 1, "unchanged: not read again"


def test_a_broken_token_file_keeps_the_tokens_read_last(tmp_path, caplog):
    """A half-written or removed Secret must not lock every client out: the server warns (once) and goes on."""
    path = tmp_path / "tokens"
    path.write_text("old\n")
    clock = Clock()
    tokens = TokenFile(path, clock=clock)
    _rewrite(path, "\n")
    with caplog.at_level(logging.WARNING, logger="service.tokens"):
        for step in (1.0, 2.0, 3.0):
            clock.now = step
            assert tokens.current() == (b"old",)
    assert [r.getMessage() for r in caplog.records].count(
        f"kept the previous bearer tokens: {path} cannot be used ({path} holds no token)"
    ) == 1
    path.unlink()
    clock.now = 4.0
    assert tokens.current() == (b"old",)
    _rewrite(path, "newer\n")
    clock.now = 5.0
    assert tokens.current() == (b"newer",)


def test_a_deleted_token_file_keeps_the_tokens_read_last_with_a_warning(tmp_path, caplog):
    """A file deleted (not emptied) was kept silently: its missing status equalled "nothing refused yet"."""
    path = tmp_path / "tokens"
    path.write_text("old\n")
    clock = Clock()
    tokens = TokenFile(path, clock=clock)
    path.unlink()
    with caplog.at_level(logging.WARNING, logger="service.tokens"):
        for step in (1.0, 2.0):
            clock.now = step
            assert tokens.current() == (b"old",)
    warnings = [r.getMessage() for r in caplog.records if r.getMessage().startswith("kept the previous bearer tokens")]
    assert len(warnings) == 1 and str(path) in warnings[0], warnings


def test_a_server_takes_a_rotated_token_without_a_restart(start_server, tmp_path):
    path = tmp_path / "tokens"
    path.write_text("old\n")
    path.chmod(0o600)
    server = start_server(auth_token_file=path)

    async def describe(token: str) -> str:
        async with Client(server.target, token=token) as client:
            try:
                await client.describe()
            except StreamError as error:
                assert error.status == grpc.StatusCode.UNAUTHENTICATED, error
                return "refused"
            return "accepted"

    def settle(token: str, expected: str) -> None:
        deadline = time.monotonic() + 10
        while (outcome := run(describe(token))) != expected and time.monotonic() < deadline:
            time.sleep(0.2)
        assert outcome == expected, (token, outcome)

    assert run(describe("old")) == "accepted" and run(describe("new")) == "refused"
    _rewrite(path, "old\nnew\n")  # step 1: both
    settle("new", "accepted")
    assert run(describe("old")) == "accepted"
    _rewrite(path, "new\n")  # step 3: the old one is gone
    settle("old", "refused")
    assert run(describe("new")) == "accepted"


@pytest.mark.parametrize("content", ["", "\n  \n"])
def test_a_token_file_without_a_token_is_refused_at_start(tmp_path, content):
    path = tmp_path / "tokens"
    path.write_text(content)
    with pytest.raises(ValueError, match="holds no token"):
        TokenFile(path)


def test_calls_are_told_of_new_tokens_only_once_the_file_has_settled(tmp_path):
    """The revocation of calls (``on_reload``) waits for a look at the file that finds it as it was read: a file
    caught half-written (here a token cut short, rewritten in place) must not end the calls of the token it cut."""
    path = tmp_path / "tokens"
    path.write_text("old-token\nnew-token\n")
    clock, told = Clock(), []
    tokens = TokenFile(path, check_every_s=1.0, clock=clock, on_reload=told.append)
    path.write_text("new-to")  # half-written in place
    clock.now = 1.0
    assert tokens.current() == (b"new-to",) and told == []  # new calls meet it for a moment; no call is ended
    time.sleep(0.01)  # a later modification time
    path.write_text("new-token\n")
    clock.now = 2.0
    assert tokens.current() == (b"new-token",) and told == []
    clock.now = 3.0
    tokens.current()
    assert told == [(b"new-token",)]  # settled: the calls of old-token end
    clock.now = 4.0
    tokens.current()
    assert told == [(b"new-token",)], "told once per reload"
