"""The inputs and outputs of an Open Inference Protocol ``ModelInfer`` request (:mod:`service.open_inference`): its one
image, read from its ``FRAME`` or ``IMAGE`` tensor with every size checked before the data is read, and the outputs
it asks for."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from service.image_headers import image_format
from service.types import EncodedImage, ImageEncoding

FRAME, IMAGE = "FRAME", "IMAGE"
SLOTS, SLOT_IDS, SEGMENTATION = "SLOTS", "SLOT_IDS", "SEGMENTATION"
OUTPUTS = (SLOTS, SLOT_IDS, SEGMENTATION)
"""The outputs ``ModelInfer`` gives, in the order it gives them."""
OUTPUT_DATATYPES = {SLOTS: "FP32", SLOT_IDS: "INT32", SEGMENTATION: "UINT8"}
"""Each output's datatype, as the protocol names it."""
_ENCODINGS = {"PNG": ImageEncoding.PNG, "JPEG": ImageEncoding.JPEG}
"""The encoding of each format :func:`~service.image_headers.image_format` tells apart."""
_SEQUENCE_PARAMETERS = frozenset({"sequence_id", "sequence_start", "sequence_end"})
"""Triton's parameters for a request of a stateful sequence, which this stateless call refuses."""


class InferRequestError(ValueError):
    """A ``ModelInfer`` request that cannot be run; the message says what is wrong with it."""


def input_image(request: Any) -> EncodedImage:
    """The image of a ``ModelInferRequest``: its one input tensor, ``FRAME`` or ``IMAGE`` (see the proto). The sizes
    are checked before the data is read, so a malformed request costs little whatever its size (it runs on a decode
    thread all the same).

    Raises:
        InferRequestError: no input, more than one, an unknown name or type, a shape or a data size that does not
            match, data given both raw and as contents, Triton's sequence parameters (this is stateless).
    """
    sequence = sorted(set(request.parameters) & _SEQUENCE_PARAMETERS)
    if sequence:
        raise InferRequestError(
            f"parameter(s) {', '.join(sequence)}: ModelInfer keeps no state between requests; send a video's frames "
            "on one slotstream.v1.Perception/Stream instead"
        )
    if len(request.inputs) != 1:
        raise InferRequestError(f"give exactly one input tensor, {FRAME} or {IMAGE}; got {len(request.inputs)}")
    tensor = request.inputs[0]
    raw = request.raw_input_contents
    if len(raw) > 1:
        raise InferRequestError(f"raw_input_contents holds {len(raw)} entries for one input tensor")
    if raw and (tensor.contents.uint_contents or tensor.contents.bytes_contents):
        raise InferRequestError(f"input {tensor.name!r} has its data both in raw_input_contents and in contents")
    if tensor.name == FRAME:
        return _frame(tensor, raw[0] if raw else None)
    if tensor.name == IMAGE:
        return _image(tensor, raw[0] if raw else None)
    raise InferRequestError(f"unknown input tensor {tensor.name!r}: give {FRAME} (UINT8 [H, W, 3]) or {IMAGE} (BYTES)")


def _frame(tensor: Any, raw: bytes | None) -> EncodedImage:
    """The raw RGB image of a ``FRAME`` tensor whose data is ``raw`` (``None``: its ``uint_contents``)."""
    shape = list(tensor.shape)
    if tensor.datatype != "UINT8":
        raise InferRequestError(f"input {FRAME} must be UINT8, got {tensor.datatype or 'no datatype'}")
    sides = shape[1:] if len(shape) == 4 and shape[0] == 1 else shape
    if len(sides) != 3 or sides[2] != 3 or min(sides) < 1:
        raise InferRequestError(f"input {FRAME} must have shape [H, W, 3] or [1, H, W, 3], got {shape}")
    height, width, _ = sides
    given = len(raw) if raw is not None else len(tensor.contents.uint_contents)
    if given != height * width * 3:
        raise InferRequestError(f"input {FRAME} of shape {shape} needs {height * width * 3} bytes, got {given}")
    data = raw if raw is not None else _uint8_contents(tensor.contents.uint_contents)
    return EncodedImage(ImageEncoding.RAW_RGB8, bytes(data), height, width, 3)


def _image(tensor: Any, raw: bytes | None) -> EncodedImage:
    """The JPEG or PNG file of an ``IMAGE`` tensor whose data is ``raw`` (``None``: its ``bytes_contents``)."""
    shape = list(tensor.shape)
    if tensor.datatype != "BYTES":
        raise InferRequestError(f"input {IMAGE} must be BYTES, got {tensor.datatype or 'no datatype'}")
    if shape not in ([1], [1, 1]):
        raise InferRequestError(f"input {IMAGE} must have shape [1] or [1, 1] (one file), got {shape}")
    if raw is None and len(tensor.contents.bytes_contents) != 1:
        raise InferRequestError(
            f"input {IMAGE} must hold one JPEG or PNG file, got {len(tensor.contents.bytes_contents)} elements"
        )
    data = _one_length_prefixed(raw) if raw is not None else tensor.contents.bytes_contents[0]
    encoding = _ENCODINGS.get(image_format(data) or "")
    if encoding is None:
        raise InferRequestError(f"input {IMAGE} is neither a JPEG nor a PNG file (by its first bytes)")
    return EncodedImage(encoding, data)


def _uint8_contents(values: Any) -> bytes:
    """``uint_contents`` as bytes, each value checked to be a byte."""
    array = np.asarray(values, dtype=np.uint64)
    if array.size and int(array.max()) > 255:
        raise InferRequestError(f"input {FRAME} holds values above 255 in uint_contents")
    return array.astype(np.uint8).tobytes()


def _one_length_prefixed(data: bytes) -> bytes:
    """The one element of a raw BYTES tensor: a 4-byte little-endian length, then that many bytes, and nothing
    after them.

    Raises:
        InferRequestError: the data ends early, or holds more than that element.
    """
    if len(data) < 4:
        raise InferRequestError(f"input {IMAGE}: its raw data ends inside its element's 4-byte length")
    (length,) = struct.unpack_from("<I", data)
    if 4 + length != len(data):
        raise InferRequestError(
            f"input {IMAGE} must hold one JPEG or PNG file: its raw data holds {len(data)} bytes, where one element "
            f"of the {length} bytes its length prefix gives takes {4 + length}"
        )
    return data[4:]


def requested_outputs(request: Any) -> tuple[str, ...]:
    """The outputs a request asks for, in :data:`OUTPUTS` order (all when it names none).

    Raises:
        InferRequestError: an output this model does not give.
    """
    names = [output.name for output in request.outputs]
    unknown = [name for name in names if name not in OUTPUTS]
    if unknown:
        raise InferRequestError(f"unknown output(s) {', '.join(map(repr, unknown))}: choose from {', '.join(OUTPUTS)}")
    return tuple(name for name in OUTPUTS if not names or name in names)
