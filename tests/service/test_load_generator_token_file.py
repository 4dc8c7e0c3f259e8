"""The load generator's ``--token-file``: the token is read from a file, as the client's is, not given on the command
line where other users of the machine see it."""

from __future__ import annotations

import json

import pytest

from service.bench.load import main


def test_the_load_generator_reads_its_token_from_a_file(start_server, tmp_path, capsys):
    token = "client-0123456789abcdefghijklmno"
    server = start_server(auth_token=token)
    token_file = tmp_path / "token"
    token_file.write_text(f"{token}\n")
    report = tmp_path / "load.json"
    argv = ["--target", server.target, "--frames", "3", "--size", "32", "--json", str(report)]
    assert main([*argv, "--token-file", str(token_file)]) == 0
    assert json.loads(report.read_text())["remote"][0]["results"] == 3
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--token-file", str(tmp_path / "missing")])
    assert exited.value.code == 2 and "--token-file" in capsys.readouterr().err
