"""A ``config.json`` whose arrays nest thousands of levels deep (or hundreds, deep enough for the model's
constructor to run out of Python's recursion limit) is refused with a ``ValueError`` naming the file and what is
wrong, instead of a ``RecursionError`` that names nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plugins import ComponentRegistry, VideoSlotModel
from plugins.model_files import MAX_JSON_NESTING, parse_json


def nested(levels: int) -> str:
    """``levels`` arrays, one inside the other."""
    return "[" * levels + "]" * levels


def test_a_config_nested_past_the_parser_is_refused_naming_the_file(tmp_path, tiny_model: VideoSlotModel) -> None:
    tiny_model.save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text('{"format_version": 1, "model": ' + nested(200_000) + "}")
    with pytest.raises(ValueError) as refused:
        VideoSlotModel.from_pretrained(tmp_path)
    message = str(refused.value)
    assert message.startswith(f"{tmp_path / 'config.json'}: its arrays and objects nest more than"), message


def test_a_config_nested_past_the_constructor_is_refused_before_building(
    tmp_path: Path, registry: ComponentRegistry, tiny_model: VideoSlotModel
) -> None:
    tiny_model.save_pretrained(tmp_path)
    payload = json.loads((tmp_path / "config.json").read_text())
    text = json.dumps(payload).replace('"strides": [2, 2]', '"strides": ' + nested(500))
    assert text != json.dumps(payload)
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(ValueError, match=f"config.json: its arrays and objects nest more than {MAX_JSON_NESTING}"):
        VideoSlotModel.from_pretrained(tmp_path, registry=registry)


def test_the_nesting_limit_is_counted_exactly_and_other_errors_say_not_json() -> None:
    deepest = parse_json('{"a": ' + nested(MAX_JSON_NESTING - 1) + "}")["a"]  # the object is the first level
    for _ in range(MAX_JSON_NESTING - 2):
        (deepest,) = deepest
    assert deepest == []
    with pytest.raises(ValueError, match="nest more than"):
        parse_json('{"a": ' + nested(MAX_JSON_NESTING) + "}")
    with pytest.raises(ValueError, match="not valid JSON: Expecting"):
        parse_json("{")
    with pytest.raises(ValueError, match="not valid JSON: Exceeds the limit"):  # int() refuses that many digits
        parse_json("1" * 100_000)
