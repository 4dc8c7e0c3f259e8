"""The committed stubs match the proto, and the proto documents every element."""

from __future__ import annotations

import re

import pytest
from google.protobuf import descriptor_pb2

from service import protogen
from service.errors import ErrorCode, StreamAbort
from service.open_checks import STREAM_ID_RULE, check_stream_id

# Paths into FileDescriptorProto (see descriptor.proto): message_type = 4, field = 2, enum_type = 5,
# enum value = 2, service = 6, method = 2.
_MESSAGE, _FIELD, _ENUM, _VALUE, _SERVICE, _METHOD = 4, 2, 5, 2, 6, 2


def test_generated_stubs_are_up_to_date():
    """`service/_pb/` is exactly what `make proto` generates from `proto/` (run it after editing the proto)."""
    assert protogen.stale_files() == [], "stubs are stale: run `make proto` and commit service/_pb/"


def _undocumented(documented, kind, parents, child_kind, child_attr):
    missing = []
    for i, parent in enumerate(parents):
        if (kind, i) not in documented:
            missing.append(parent.name)
        for j, child in enumerate(getattr(parent, child_attr)):
            if (kind, i, child_kind, j) not in documented:
                missing.append(f"{parent.name}.{child.name}")
    return missing


def test_every_proto_element_is_documented():
    """Every service, method, message, field, enum and enum value has a leading comment."""
    files = descriptor_pb2.FileDescriptorSet.FromString(protogen.descriptor_set()).file
    undocumented = []
    for file in files:
        documented = {tuple(loc.path) for loc in file.source_code_info.location if loc.leading_comments.strip()}
        undocumented += _undocumented(documented, _SERVICE, file.service, _METHOD, "method")
        undocumented += _undocumented(documented, _MESSAGE, file.message_type, _FIELD, "field")
        undocumented += _undocumented(documented, _ENUM, file.enum_type, _VALUE, "value")
    assert undocumented == []


def test_proto_package_and_service_names_are_stable():
    """Clients in other languages address `slotstream.v1.Perception` (and operators `slotstream.v1.Admin`); renaming
    either breaks them."""
    file = _proto_file("slotstream.v1")
    assert [s.name for s in file.service] == ["Perception", "Admin"]
    assert {m.name for m in file.service[0].method} >= {"Stream", "Describe"}


def test_the_open_inference_protocol_keeps_its_names_and_field_numbers():
    """Stock clients (tritonclient, perf_analyzer) speak the protocol by these names and numbers
    (kserve/open-inference-protocol, grpc_predict_v2.proto); a difference breaks them without any error here."""
    file = _proto_file("inference")
    (service,) = file.service
    assert service.name == "GRPCInferenceService"
    assert [m.name for m in service.method] == [
        "ServerLive",
        "ServerReady",
        "ModelReady",
        "ServerMetadata",
        "ModelMetadata",
        "ModelInfer",
    ]
    messages = {message.name: message for message in file.message_type}

    def numbers(message):
        return {field.name: field.number for field in message.field}

    assert numbers(messages["ModelInferRequest"]) == {
        "model_name": 1,
        "model_version": 2,
        "id": 3,
        "parameters": 4,
        "inputs": 5,
        "outputs": 6,
        "raw_input_contents": 7,
    }
    assert numbers(messages["ModelInferResponse"]) == {
        "model_name": 1,
        "model_version": 2,
        "id": 3,
        "parameters": 4,
        "outputs": 5,
        "raw_output_contents": 6,
    }
    nested = {m.name: m for m in messages["ModelInferRequest"].nested_type}
    assert numbers(nested["InferInputTensor"]) == {
        "name": 1,
        "datatype": 2,
        "shape": 3,
        "parameters": 4,
        "contents": 5,
    }
    assert numbers(nested["InferRequestedOutputTensor"]) == {"name": 1, "parameters": 2}
    output = {m.name: m for m in messages["ModelInferResponse"].nested_type}["InferOutputTensor"]
    assert numbers(output) == {"name": 1, "datatype": 2, "shape": 3, "parameters": 4, "contents": 5}
    assert numbers(messages["InferTensorContents"]) == {
        "bool_contents": 1,
        "int_contents": 2,
        "int64_contents": 3,
        "uint_contents": 4,
        "uint64_contents": 5,
        "fp32_contents": 6,
        "fp64_contents": 7,
        "bytes_contents": 8,
    }
    assert numbers(messages["InferParameter"]) == {"bool_param": 1, "int64_param": 2, "string_param": 3}
    assert numbers(messages["ModelMetadataResponse"]) == {
        "name": 1,
        "versions": 2,
        "platform": 3,
        "inputs": 4,
        "outputs": 5,
    }
    assert numbers(messages["ServerMetadataResponse"]) == {"name": 1, "version": 2, "extensions": 3}
    assert numbers(messages["ModelReadyRequest"]) == {"name": 1, "version": 2}


def _proto_file(package):
    """The descriptor of the proto file of ``package``."""
    (file,) = [
        f for f in descriptor_pb2.FileDescriptorSet.FromString(protogen.descriptor_set()).file if f.package == package
    ]
    return file


def test_stubs_that_differ_only_in_the_generators_version_stamps_are_up_to_date(tmp_path):
    """A fresh install may bring a newer grpcio-tools, which stamps its own version in the same code: not stale.
    A change to the code itself is."""
    for path in protogen.OUTPUT_DIR.glob("*.py*"):
        (tmp_path / path.name).write_text(path.read_text())
    grpc_stub = tmp_path / "perception_pb2_grpc.py"
    stamped = re.sub(r"GRPC_GENERATED_VERSION = '[^']*'", "GRPC_GENERATED_VERSION = '9.99.9'", grpc_stub.read_text())
    grpc_stub.write_text(stamped)
    messages = tmp_path / "perception_pb2.py"
    text = re.sub(r"# Protobuf Python Version: .*", "# Protobuf Python Version: 99.0.0", messages.read_text())
    messages.write_text(re.sub(r"(Domain\.PUBLIC,)\s*\d+,\s*\d+,\s*\d+,", r"\1 99, 0, 0,", text))
    assert protogen.stale_files(tmp_path) == []
    grpc_stub.write_text(stamped.replace("def ", "def  ", 1))  # an edit of the code, however small
    assert protogen.stale_files(tmp_path) == ["perception_pb2_grpc.py"]


def _field_comment(file, message: str, field: str) -> str:
    """The leading comment of ``message.field``, its lines joined and its spaces collapsed."""
    (index,) = [i for i, m in enumerate(file.message_type) if m.name == message]
    (number,) = [j for j, f in enumerate(file.message_type[index].field) if f.name == field]
    (location,) = [
        loc for loc in file.source_code_info.location if list(loc.path) == [_MESSAGE, index, _FIELD, number]
    ]
    return " ".join(location.leading_comments.split())


def test_the_proto_states_the_stream_id_rule_the_server_checks():
    """Both fields that name a stream id state the rule the server refuses other ids by, in its own words."""
    file = _proto_file("slotstream.v1")
    for message in ("OpenStream", "StateHandoff"):
        comment = _field_comment(file, message, "stream_id")
        assert STREAM_ID_RULE in comment and "ERROR_CODE_INVALID_OPEN" in comment, (message, comment)
    allowed = "AZaz09._:/-" * 11 + "aZ09._:"  # 128 characters: every kind the rule names
    check_stream_id(allowed)
    for refused in (allowed + "a", "a b", "a\n", "é"):
        with pytest.raises(StreamAbort) as error:
            check_stream_id(refused)
        assert error.value.code == ErrorCode.INVALID_OPEN and STREAM_ID_RULE in error.value.message
