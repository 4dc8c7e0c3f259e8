"""``ServiceConfig``: flags over environment over defaults, validated once with messages naming the flag."""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from pathlib import Path

import pytest

from service.config import (
    DEFAULT_MODEL_DIR,
    RAW_1080P_BYTES,
    ConfigError,
    ServiceConfig,
)
from service.config_sources import build_parser
from service.host import available_cores, parse_cpu_max


def test_defaults_suit_a_robot_fleet():
    config = ServiceConfig()
    assert config.listen == "127.0.0.1:50051"
    assert config.model_dir == DEFAULT_MODEL_DIR and config.model_dir.parts[-3:] == ("service", "models", "default")
    assert config.idle_timeout_s >= 60, "idle timeouts are minutes, not Triton's 1 s"
    assert config.max_message_bytes > RAW_1080P_BYTES, "a raw 1080p frame must fit in one message"


def test_flags_override_environment_which_overrides_defaults():
    env = {"SLOTSTREAM_MAX_STREAMS": "7", "SLOTSTREAM_IDLE_TIMEOUT_S": "90", "SLOTSTREAM_WARMUP": "off"}
    config = ServiceConfig.from_sources(["--max-streams", "9", "--model-dir", "/m"], env)
    assert config.max_streams == 9  # flag beats variable
    assert config.idle_timeout_s == 90.0  # variable beats default
    assert config.warmup is False
    assert config.model_dir == Path("/m") and config.resolved_model_name == "m"


def test_every_problem_is_reported_together_with_its_flag():
    with pytest.raises(ConfigError) as error:
        ServiceConfig(listen="nowhere", max_streams=0, tls_cert=Path("c.pem"), idle_timeout_s=-1)
    message = str(error.value)
    for fragment in (
        "--listen must be host:port",
        "--max-streams must be >= 1",
        "--tls-cert and --tls-key",
        "--idle-timeout-s",
    ):
        assert fragment in message


@pytest.mark.parametrize(
    ("listen", "metrics", "refused"),
    [
        ("127.0.0.1:50051", "127.0.0.1:50051", True),
        ("0.0.0.0:50051", "127.0.0.1:50051", True),
        ("127.0.0.1:50051", "[::]:50051", True),
        ("127.0.0.1:50051", "127.0.0.2:50051", False),
        ("127.0.0.1:50051", "127.0.0.1:9090", False),
        ("127.0.0.1:0", "127.0.0.1:0", False),  # two ephemeral ports
    ],
)
def test_a_metrics_address_that_takes_the_grpc_port_is_refused_before_the_model_loads(listen, metrics, refused):
    if not refused:
        ServiceConfig(listen=listen, metrics_listen=metrics)
        return
    with pytest.raises(ConfigError) as error:
        ServiceConfig(listen=listen, metrics_listen=metrics)
    assert f"--metrics-listen {metrics} takes the port of --listen {listen}" in str(error.value)


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"max_message_bytes": 3_000_000_000}, "--max-message-bytes must be between 1 MiB and 2147483647"),
        ({"max_message_bytes": 1000}, "--max-message-bytes must be between 1 MiB"),
        ({"max_image_pixels": 300_000_000}, "decompression bombs"),
        ({"max_image_pixels": 0}, "--max-image-pixels must be between 1 and"),
        ({"model_instances": -3}, "--model-instances must be >= 0"),
    ],
)
def test_out_of_range_limits_are_refused_before_the_server_starts(settings, fragment):
    """Values gRPC or the image decoder cannot take fail here, with their flag, not later with a traceback."""
    with pytest.raises(ConfigError, match=fragment):
        ServiceConfig(**settings)


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"SLOTSTREAM_MAX_STREAMS": "many"}, "SLOTSTREAM_MAX_STREAMS='many'"),
        ({"SLOTSTREAM_WARMUP": "maybe"}, "expected one of 1/0"),
        ({"SLOTSTREAM_BACKEND": "tpu"}, "--backend must be one of"),
    ],
)
def test_bad_environment_values_are_explained(env, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(")):
        ServiceConfig.from_sources([], env)


def test_misspelt_variables_are_flagged(caplog):
    with caplog.at_level(logging.WARNING):
        ServiceConfig.from_sources([], {"SLOTSTREAM_MAX_STREAM": "3"})
    assert "did you mean SLOTSTREAM_MAX_STREAMS" in caplog.text


def test_every_flag_spelling_is_a_variable_too(caplog):
    """``--model`` and ``--no-warmup`` are flags, so ``SLOTSTREAM_MODEL`` and ``SLOTSTREAM_NO_WARMUP`` were
    expected to work; they were ignored with a warning, and the server served the default model."""
    with caplog.at_level(logging.WARNING):
        config = ServiceConfig.from_sources([], {"SLOTSTREAM_MODEL": "/m", "SLOTSTREAM_NO_WARMUP": "1"})
    assert config.model_dir == Path("/m") and config.warmup is False
    assert "unknown variable" not in caplog.text
    config = ServiceConfig.from_sources([], {"SLOTSTREAM_NO_WARMUP": "false", "SLOTSTREAM_WARMUP": "yes"})
    assert config.warmup is True


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        (
            {"SLOTSTREAM_MODEL": "/a", "SLOTSTREAM_MODEL_DIR": "/b"},
            "SLOTSTREAM_MODEL_DIR='/b' contradicts SLOTSTREAM_MODEL='/a'",
        ),
        (
            {"SLOTSTREAM_NO_WARMUP": "1", "SLOTSTREAM_WARMUP": "1"},
            "SLOTSTREAM_WARMUP='1' contradicts SLOTSTREAM_NO_WARMUP='1'",
        ),
    ],
)
def test_two_variables_for_one_setting_must_agree(env, fragment):
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        ServiceConfig.from_sources([], env)


def test_missing_model_files_say_how_to_get_a_model(tmp_path, monkeypatch):
    import service.config_checks as checks

    monkeypatch.setattr(checks, "DEFAULT_MODEL_DIR", tmp_path / "models" / "default")
    with pytest.raises(ConfigError, match=re.escape("`python -m service --model-dir runs/tiny/model`")):
        ServiceConfig(model_dir=checks.DEFAULT_MODEL_DIR).check_files()
    with pytest.raises(ConfigError, match="not a model directory"):
        ServiceConfig(model_dir=tmp_path).check_files()


def test_token_file_is_read_and_must_not_be_empty(tmp_path):
    token = tmp_path / "token"
    token.write_text("abc\n")
    assert ServiceConfig(auth_token_file=token).bearer_tokens() == ("abc",)
    token.write_text("  new-token \n\nabc\n")  # rotating: one token per line
    assert ServiceConfig(auth_token_file=token).bearer_tokens() == ("new-token", "abc")
    assert ServiceConfig(auth_token="xyz").bearer_tokens() == ("xyz",) and ServiceConfig().bearer_tokens() == ()
    token.write_text("\n \n")
    with pytest.raises(ConfigError, match="is empty"):
        ServiceConfig(auth_token_file=token).bearer_tokens()
    with pytest.raises(ConfigError, match="not both"):
        ServiceConfig(auth_token="x", auth_token_file=token)


def test_help_lists_every_setting(capsys):
    with pytest.raises(SystemExit):
        ServiceConfig.from_sources(["--help"], {})
    text = capsys.readouterr().out
    flags = ["--listen", "--model-dir", "--backend", "--max-streams", "--idle-timeout-s", "--max-batch-size"]
    flags += ["--max-queue-delay-ms", "--max-message-bytes", "--tls-cert", "--tls-client-ca", "--auth-token-file"]
    assert all(flag in text for flag in flags)


def test_the_usage_line_names_the_command_that_started_the_server(monkeypatch):
    monkeypatch.setattr("sys.argv", ["/venv/bin/slotstream", "--help"])
    assert build_parser().prog == "slotstream"
    monkeypatch.setattr("sys.argv", ["/repo/service/__main__.py", "--help"])
    assert build_parser().prog == "python -m service"


def test_help_says_max_image_pixels_also_caps_the_mask_size(capsys):
    """Opens asking for a larger mask are refused citing --max-image-pixels; its help must say it bounds masks."""
    with pytest.raises(SystemExit):
        ServiceConfig.from_sources(["--help"], {})
    text = " ".join(capsys.readouterr().out.split())
    entry = text.split("--max-image-pixels MAX_IMAGE_PIXELS")[-1].split("(default:")[0]
    assert "largest mask size (mask_height x mask_width) a stream may ask for" in entry, entry


def test_backend_settings_are_flags_and_variables_handed_to_the_chosen_backend(tmp_path):
    env = {"SLOTSTREAM_ONNX_INTRA_OP_THREADS": "2", "SLOTSTREAM_TENSORRT_FP16": "on"}
    flags = ["--backend", "onnx", "--onnx-graph-optimization", "basic", "--tensorrt-cache-dir", str(tmp_path)]
    onnx = ServiceConfig.from_sources(flags, env)
    assert onnx.backend_options() == {
        "intra_op_threads": 2,
        "inter_op_threads": 1,
        "graph_optimization": "basic",
        "tensorrt_fp16": True,
        "tensorrt_cache_dir": tmp_path,
    }
    tensorrt = ServiceConfig.from_sources(["--backend", "tensorrt", "--tensorrt-cuda-graphs"], env)
    assert tensorrt.backend_options() == {"fp16": True, "cache_dir": None, "cuda_graphs": True, "workspace_mb": 1024}
    assert ServiceConfig.from_sources([], env).backend_options() == {}  # torch has none
    assert ServiceConfig().tensorrt_fp16 is None, "unset follows the export's precision"


def test_bad_backend_settings_name_their_flag():
    with pytest.raises(ConfigError) as error:
        ServiceConfig(onnx_intra_op_threads=-1, onnx_graph_optimization="max", tensorrt_workspace_mb=0)
    message = str(error.value)
    for fragment in ("--onnx-intra-op-threads must be >= 0", "--onnx-graph-optimization", "--tensorrt-workspace-mb"):
        assert fragment in message


@pytest.mark.parametrize("value", ["nan", "inf"])
@pytest.mark.parametrize(
    "flag",
    [
        "--idle-timeout-s",
        "--max-idle-timeout-s",
        "--max-resume-window-s",
        "--max-queue-delay-ms",
        "--inline-model-max-ms",
        "--grace-period-s",
        "--model-stall-timeout-s",
    ],
)
def test_durations_must_be_finite(flag, value):
    """NaN slips past every range check (an idle timeout of NaN would never reclaim a stream)."""
    with pytest.raises(ConfigError, match=f"{flag} must be a finite number, got {value}"):
        ServiceConfig.from_sources([flag, value], {})


@pytest.mark.parametrize(
    ("text", "cores"),
    [
        ("max 100000\n", None),
        ("200000 100000\n", 2.0),
        ("150000 100000", 1.5),
        ("50000 100000\n", 0.5),
        ("400000", 4.0),
        ("", None),
        ("garbage here", None),
        ("0 100000", None),
    ],
)
def test_cgroup_cpu_max_is_parsed_to_a_core_count(text, cores):
    assert parse_cpu_max(text) == cores


def test_automatic_model_instances_follow_the_cores_and_the_backend_threads(tmp_path):
    assert ServiceConfig(torch_threads=1).resolved_model_instances(cores=2) == 2
    assert ServiceConfig(torch_threads=2).resolved_model_instances(cores=8) == 4
    assert ServiceConfig(torch_threads=0).resolved_model_instances(cores=8) == 1  # torch uses every core
    onnx = ServiceConfig(backend="onnx", torch_threads=1, onnx_intra_op_threads=4)
    assert onnx.resolved_model_instances(cores=8) == 2, "onnx calls use --onnx-intra-op-threads, not torch's"
    assert replace(onnx, onnx_intra_op_threads=0).resolved_model_instances(cores=8) == 1  # ORT: one per core
    assert ServiceConfig(device="cuda:0").resolved_model_instances(cores=8) == 1
    missing = tmp_path / "missing"
    assert available_cores(missing, missing, missing) >= 1  # no cgroup file: the affinity, silently
    (tmp_path / "cpu.max").write_text("100000 100000\n")
    assert available_cores(tmp_path / "cpu.max", missing, missing) == 1


def test_a_cgroup_v1_cpu_limit_counts_when_there_is_no_v2_one(tmp_path):
    """A node still on cgroup v1 sets the container's CPU limit as a quota and a period in two files."""
    quota, period, missing = tmp_path / "cpu.cfs_quota_us", tmp_path / "cpu.cfs_period_us", tmp_path / "cpu.max"
    quota.write_text("100000\n")
    period.write_text("100000\n")
    assert available_cores(missing, quota, period) == 1
    quota.write_text("-1\n")  # no limit
    assert available_cores(missing, quota, period) == available_cores(missing, missing, missing)


def test_a_bearer_token_sent_in_plain_text_or_kept_in_a_world_readable_file_is_warned_about(tmp_path):
    secret = "s3cret-" + "x" * 16  # long enough not to be warned about (test_token_file_lines)
    token = tmp_path / "token"
    token.write_text(secret)
    token.chmod(0o644)
    exposed = ServiceConfig(listen="0.0.0.0:50051", auth_token_file=token).security_warnings()
    assert len(exposed) == 2, exposed
    assert "TLS is off on --listen 0.0.0.0:50051: the token crosses the network in plain text" in exposed[0]
    assert "can be read by every user of this machine (mode 644)" in exposed[1] and "chmod 600" in exposed[1]
    assert secret not in " ".join(exposed)
    token.chmod(0o600)
    assert ServiceConfig(listen="127.0.0.1:0", auth_token_file=token).security_warnings() == [], "loopback, private"
    assert ServiceConfig(listen="[::1]:0", auth_token=secret).security_warnings() == []
    tls = {"tls_cert": tmp_path / "cert.pem", "tls_key": tmp_path / "key.pem"}
    assert ServiceConfig(listen="0.0.0.0:0", auth_token=secret, **tls).security_warnings() == []
    assert ServiceConfig(listen="0.0.0.0:0").security_warnings() == [], "no token, nothing to expose"


@pytest.mark.parametrize(("argv", "environ"), [(["--auth-token", ""], {}), ([], {"SLOTSTREAM_AUTH_TOKEN": " "})])
def test_an_auth_token_set_but_empty_is_refused_not_taken_for_no_authentication(argv, environ):
    """``--auth-token "$TOKEN"`` with the variable unset would otherwise serve every client without a token."""
    with pytest.raises(ConfigError, match=r"--auth-token \(or SLOTSTREAM_AUTH_TOKEN\) is set but empty"):
        ServiceConfig.from_sources(argv, environ, notes=[])
    assert ServiceConfig.from_sources([], {}, notes=[]).auth_token == ""  # left out: no authentication


def test_a_thread_count_past_any_machine_is_refused_before_torch_crashes_on_it():
    with pytest.raises(ConfigError, match=r"--torch-threads must be at most 1024 .* got 100000"):
        ServiceConfig(torch_threads=100_000)
    ServiceConfig(torch_threads=1024, decode_threads=1024)
