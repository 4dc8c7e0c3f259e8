"""A token file line no client can send (a byte-order mark, a space inside it, a non-ASCII letter) is refused at
startup and kept out at a reload, naming the file and the line, never the token; a short token is warned about."""

from __future__ import annotations

import logging

import pytest
from test_token_rotation import Clock

from service.config import ConfigError, ServiceConfig
from service.tokens import TokenFile, TokenFileError, read_token_lines

LONG = "a-token-long-enough-" + "x" * 12


def _rewrite(path, data: bytes) -> None:
    """Replace the file as a Secret update does: a new file renamed over the old (a new inode)."""
    fresh = path.with_suffix(".new")
    fresh.write_bytes(data)
    fresh.replace(path)


UNSENDABLE = [
    pytest.param("\ufeffbom-token-abcdefghijklmnopqrstu\n", 1, "a byte-order mark (U+FEFF", 0, id="utf8-bom"),
    pytest.param(f"{LONG}\n\ntok1 tok2\n", 3, "a space", 4, id="inner-space"),
    pytest.param(f"{LONG}\ncaf\u00e9-token-abcdefghijklmnop\n", 2, "the character U+00E9", 3, id="non-ascii"),
    pytest.param(f"{LONG}\ntab\there-abcdefghijklmnopqrst\n", 2, "a tab", 3, id="tab"),
]


@pytest.mark.parametrize(("text", "line", "what", "position"), UNSENDABLE)
def test_a_line_no_client_can_send_is_refused_at_startup_naming_the_line_not_the_token(
    tmp_path, text, line, what, position
):
    path = tmp_path / "tokens"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(TokenFileError) as raised:
        read_token_lines(path)
    message = str(raised.value)
    assert message.startswith(f"{path} line {line}: the token holds {what}") and f"at position {position}" in message
    assert raised.value.line == line
    with pytest.raises(ConfigError) as refused:
        ServiceConfig(auth_token_file=path).bearer_tokens()
    assert str(refused.value).startswith(f"--auth-token-file {path} line {line}: the token holds {what}"), refused
    with pytest.raises(TokenFileError):
        TokenFile(path)
    for secret in ("bom-token", "tok1", "tok2", "caf", "here-abc", LONG):
        assert secret not in message and secret not in str(refused.value)


def test_a_file_that_is_not_utf8_is_refused_naming_the_line(tmp_path):
    path = tmp_path / "tokens"
    path.write_bytes(LONG.encode() + b"\n\xff\xfe-token\n")
    with pytest.raises(ConfigError, match=f"--auth-token-file {path} line 2 is not UTF-8 text"):
        ServiceConfig(auth_token_file=path).bearer_tokens()


def test_blank_lines_and_surrounding_blanks_are_still_ignored(tmp_path):
    path = tmp_path / "tokens"
    path.write_text(f"\n  {LONG}\t\r\n\n second-{LONG} \n")
    assert read_token_lines(path) == ((2, LONG), (4, f"second-{LONG}"))
    assert ServiceConfig(auth_token_file=path).bearer_tokens() == (LONG, f"second-{LONG}")


@pytest.mark.parametrize(("text", "line"), [(p.values[0], p.values[1]) for p in UNSENDABLE])
def test_a_reload_with_a_line_no_client_can_send_keeps_the_previous_tokens_with_one_warning(
    tmp_path, caplog, text, line
):
    path = tmp_path / "tokens"
    path.write_text(f"{LONG}\n")
    clock = Clock()
    tokens = TokenFile(path, clock=clock)
    _rewrite(path, text.encode())
    with caplog.at_level(logging.WARNING, logger="service.tokens"):
        for step in (1.0, 2.0):
            clock.now = step
            assert tokens.current() == (LONG.encode(),)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and warnings[0].startswith(
        f"kept the previous bearer tokens: {path} cannot be used ({path} line {line}: the token holds"
    ), warnings
    assert tokens.reloads == 0


def test_a_short_token_is_warned_about_at_startup_and_reload_but_accepted(tmp_path, caplog):
    path = tmp_path / "tokens"
    path.write_text(f"{LONG}\nshort-one\n")
    path.chmod(0o600)
    config = ServiceConfig(listen="127.0.0.1:0", auth_token_file=path)
    assert config.bearer_tokens() == (LONG, "short-one")
    (warning,) = config.security_warnings()
    assert warning.startswith(f"--auth-token-file {path}: line 2 (9 characters): shorter than 22 characters")
    assert "short-one" not in warning
    flag = ServiceConfig(listen="127.0.0.1:0", auth_token="s3cret").security_warnings()
    assert len(flag) == 1 and flag[0].startswith("--auth-token is 6 characters, shorter than 22"), flag
    assert "s3cret" not in flag[0]
    assert ServiceConfig(listen="127.0.0.1:0", auth_token=LONG[:22]).security_warnings() == [], "22 is enough"
    clock = Clock()
    tokens = TokenFile(path, clock=clock)
    _rewrite(path, f"{LONG}\nstill-short\n".encode())
    clock.now = 1.0
    with caplog.at_level(logging.WARNING, logger="service.tokens"):
        assert tokens.current() == (LONG.encode(), b"still-short")
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [
        f"{path}: line 2 (11 characters): shorter than 22 characters (under about 128 bits), a token may be guessed; "
        "use a long random one (`openssl rand -base64 32` makes 44 characters)"
    ], warnings
