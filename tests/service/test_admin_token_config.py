"""``--admin-token-file``: read like the client token file, refused at start-up naming the flag, and warned about
when it exposes its tokens (plaintext, readable by everyone, short) or shares one with the clients."""

from __future__ import annotations

import pytest

from service.__main__ import main as serve_main
from service.config import ConfigError, ServiceConfig

LONG = "a-long-random-admin-token-0123456789"


def _tokens(path, text, mode=0o600):
    path.write_text(text)
    path.chmod(mode)
    return path


def test_admin_tokens_are_read_one_per_line_and_none_without_the_file(tmp_path):
    path = _tokens(tmp_path / "admin", f"  {LONG}\n\nsecond-{LONG}\n")
    assert ServiceConfig(admin_token_file=path).admin_tokens() == (LONG, f"second-{LONG}")
    assert ServiceConfig().admin_tokens() == ()


@pytest.mark.parametrize(
    ("text", "problem"), [("", "is empty: it holds no token"), ("tok en\n", "line 1")], ids=["empty", "space"]
)
def test_an_unusable_admin_token_file_is_refused_naming_the_flag(tmp_path, text, problem):
    path = _tokens(tmp_path / "admin", text)
    with pytest.raises(ConfigError) as error:
        ServiceConfig(admin_token_file=path).admin_tokens()
    assert str(error.value).startswith(f"--admin-token-file {path}") and problem in str(error.value)


def test_the_server_refuses_to_start_with_a_missing_admin_token_file(tmp_path, capsys):
    missing = tmp_path / "no-such-file"
    assert serve_main(["--admin-token-file", str(missing), "--listen", "127.0.0.1:0", "--metrics-listen", ""]) == 2
    error = capsys.readouterr().err
    assert f"--admin-token-file {missing}" in error and "No such file" in error


def test_admin_token_files_are_warned_about_like_client_token_files(tmp_path):
    readable = _tokens(tmp_path / "admin", "short-admin\n", mode=0o644)
    warnings = ServiceConfig(listen="0.0.0.0:50051", admin_token_file=readable).security_warnings()
    assert len(warnings) == 3, warnings
    assert warnings[0].startswith("Admin calls must send a bearer token, but TLS is off on --listen 0.0.0.0:50051")
    assert warnings[1].startswith(f"--admin-token-file {readable} can be read by every user of this machine")
    assert warnings[2].startswith(f"--admin-token-file {readable}: line 1 (11 characters): shorter than 22")
    assert all("short-admin" not in warning for warning in warnings), "never the token"
    private = _tokens(tmp_path / "private", f"{LONG}\n")
    assert ServiceConfig(listen="127.0.0.1:50051", admin_token_file=private).security_warnings() == []


def test_an_admin_token_that_clients_also_hold_is_warned_about(tmp_path):
    clients = _tokens(tmp_path / "clients", f"client-{LONG}\n{LONG}\n")
    admin = _tokens(tmp_path / "admin", f"{LONG}\n")
    config = ServiceConfig(listen="127.0.0.1:50051", auth_token_file=clients, admin_token_file=admin)
    (warning,) = config.security_warnings()
    assert warning.startswith(f"--admin-token-file {admin} holds 1 token(s) that clients may also present")
    assert LONG not in warning
    same_flag = ServiceConfig(listen="127.0.0.1:50051", auth_token=LONG, admin_token_file=admin)
    assert len(same_flag.security_warnings()) == 1
    apart = ServiceConfig(listen="127.0.0.1:50051", auth_token=f"other-{LONG}", admin_token_file=admin)
    assert apart.security_warnings() == []
