"""Per-stream frame fit (``StreamOptions.frame_fit``): how frames of another aspect ratio than the model's are
fitted (STRETCH, CROP, PAD), how the masks map back onto the whole frame, the option on the wire, the server's
``--frame-fit`` default, and the command-line client. End to end over gRPC on loopback with the tiny model (24x24
input, 4 slots, 12x12 masks) and 48x96 frames, twice as wide as the model's input.

References are computed independently of the serving code where it matters: fitted frames are cut or padded here
with numpy from the shared boxes (``plugins.frame_fit``, checked on hand-computed cases in
``tests/plugins/test_frame_fit_boxes.py``) and resized by the STRETCH path, masks upsampled with
``F.interpolate``.
"""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, JpegImagePlugin
from service_helpers import (
    SERVICE_TINY_MODEL,
    ServerThread,
    make_config,
    make_video,
    raw,
    raw_exchange,
    run,
    save_tiny_model,
)

from plugins.frame_fit import PAD_VALUE, crop_box, pad_box
from plugins.palette import slot_colours
from plugins.segmentation import segment
from plugins.testing import tiny_model_config
from service import frame_processing, wire
from service.auth import ERROR_CODE_KEY
from service.client import OUTSIDE_VIEW, Client, FrameFit, FrameResult, Output, StreamError, StreamOptions
from service.client.__main__ import main
from service.client.overlay import render_overlay
from service.client.segmentation_geometry import slot_areas
from service.config import ConfigError, ServiceConfig
from service.engine import load_engine
from service.errors import ErrorCode
from service.generated import pb
from service.images import PREPROCESSING, decode_image, fit_frame, prepare_frame, to_model_input
from service.postprocess import SHARED_CALL_MAX_PIXELS, MaskRequest, mask_outputs
from service.types import EncodedImage, ImageEncoding

SIZE = (24, 24)  # the tiny model's input
WIDE = (48, 96)  # the test frames
BIG = 1 << 30
K = SERVICE_TINY_MODEL["num_slots"]
ALL_MASKS = frozenset({Output.SLOTS, Output.SEGMENTATION, Output.SOFT_MASKS})


def _fitted(frame: np.ndarray, fit: FrameFit, size: tuple[int, int] = SIZE) -> np.ndarray:
    """``frame`` uint8 ``[H, W, 3]`` cut to (CROP) or pasted centred on a mid-grey canvas of (PAD) the shared box,
    with numpy."""
    height, width, _ = frame.shape
    if fit == FrameFit.CROP:
        top, left, box_h, box_w = crop_box(height, width, size)
        return frame[top : top + box_h, left : left + box_w]
    top, left, box_h, box_w = pad_box(height, width, size)
    canvas = np.full((box_h, box_w, 3), PAD_VALUE, dtype=np.uint8)
    canvas[-top : -top + height, -left : -left + width] = frame
    return canvas


def _softmax_masks(seed: int, shape: tuple[int, ...] = (1, K, 12, 12)) -> np.ndarray:
    logits = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
    return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)  # [B, K, h, w], sums to 1 over K


def _upsampled(masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``[K, h, w]`` -> ``[K, H, W]``, bilinear, ``align_corners=False``."""
    return F.interpolate(torch.from_numpy(masks)[None], size=size, mode="bilinear", align_corners=False)[0].numpy()


def _assert_segmentation_of(segmentation: np.ndarray, soft: np.ndarray) -> None:
    """``segmentation`` is the tie-aware argmax (``plugins.segmentation.segment``) of ``soft`` ``[K, H, W]`` on at
    least 99.9 % of the pixels: soft masks equal to 1e-5 can still fall on two sides of the tie tolerance."""
    expected = segment(torch.from_numpy(np.ascontiguousarray(soft))).numpy()
    agreement = float(np.mean(segmentation == expected))
    assert agreement >= 0.999, f"segmentation agreement {agreement:.4f}"


# -- the fitted frame -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("frame_size", [WIDE, (96, 48), (5, 8), (31, 57)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("size", [SIZE, (24, 40)], ids=["square model", "wide model"])
def test_crop_and_pad_are_the_shared_box_then_the_stretch_resize(frame_size, size):
    """CROP = decode, cut the shared crop box, the existing resize; PAD = decode, paste centred on a mid-grey
    canvas of the shared pad box, the existing resize. The view each reports is its box over the frame."""
    frame = np.random.default_rng(1).integers(0, 256, size=(*frame_size, 3), dtype=np.uint8)
    height, width = frame_size
    for fit, box in ((FrameFit.CROP, crop_box(height, width, size)), (FrameFit.PAD, pad_box(height, width, size))):
        fitted = fit_frame(raw(frame), size, BIG, fit)
        expected = to_model_input(Image.fromarray(np.ascontiguousarray(_fitted(frame, fit, size))), size)
        np.testing.assert_array_equal(fitted.pixels, expected)
        np.testing.assert_array_equal(prepare_frame(raw(frame), size, BIG, fit), expected)
        top, left, box_h, box_w = box
        whole = box == (0, 0, height, width)  # 5x8 into 24x40 rounds to the whole frame
        assert fitted.view == (None if whole else (top / height, left / width, box_h / height, box_w / width))
    stretched = fit_frame(raw(frame), size, BIG, FrameFit.STRETCH)
    assert stretched.view is None
    np.testing.assert_array_equal(stretched.pixels, prepare_frame(raw(frame), size, BIG))


def test_a_frame_with_the_models_aspect_ratio_is_fitted_alike_by_every_fit():
    frame = make_video(seed=2, frames=1, size=(48, 48))[0]
    stretched = prepare_frame(raw(frame), SIZE, BIG)
    for fit in (FrameFit.CROP, FrameFit.PAD):
        fitted = fit_frame(raw(frame), SIZE, BIG, fit)
        assert fitted.view is None, "the whole frame: masks take the STRETCH path"
        np.testing.assert_array_equal(fitted.pixels, stretched)
    with pytest.raises(ValueError, match="must be STRETCH, CROP or PAD"):
        fit_frame(raw(frame), SIZE, BIG, FrameFit.UNSPECIFIED)


@pytest.mark.parametrize("size", [SIZE, (24, 48)], ids=["square model", "wide model"])
def test_reduced_jpeg_decoding_keeps_twice_the_input_inside_the_models_view(monkeypatch, size):
    """A 256x1024 JPEG: the part the model sees (the crop box, or the padded canvas) of the reduced-scale decode
    still has at least twice the input's pixels a side, and a crop decodes a smaller scale than it needs no more
    than a pad (whose canvas is larger than the frame)."""
    smooth = np.kron(np.random.default_rng(4).integers(0, 256, size=(32, 128, 3), dtype=np.uint8), np.ones((8, 8, 1)))
    buffer = io.BytesIO()
    Image.fromarray(smooth.astype(np.uint8)).save(buffer, format="JPEG", quality=95)
    image = EncodedImage(ImageEncoding.JPEG, buffer.getvalue())
    decoded_sizes = []
    draft = JpegImagePlugin.JpegImageFile.draft

    def recording_draft(self, *args, **kwargs):
        result = draft(self, *args, **kwargs)
        decoded_sizes.append(self.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", recording_draft)
    for fit, box in ((FrameFit.CROP, crop_box), (FrameFit.PAD, pad_box)):
        decoded = decode_image(image, BIG, draft_size=size, fit=fit)
        width, height = decoded.size
        assert (width, height) == decoded_sizes[-1] and width < 1024, "decoded at a reduced scale"
        _, _, view_h, view_w = box(height, width, size)
        assert view_h >= 2 * size[0] and view_w >= 2 * size[1], (fit, decoded.size, size)
        exact = prepare_frame(raw(smooth.astype(np.uint8)), size, BIG, fit)
        assert np.abs(prepare_frame(image, size, BIG, fit) - exact).mean() < 0.05
    crop_scale, pad_scale = 1024 // decoded_sizes[0][0], 1024 // decoded_sizes[1][0]
    assert pad_scale >= crop_scale


@pytest.mark.parametrize("fit", [FrameFit.CROP, FrameFit.PAD])
def test_a_jpeg_decoded_at_a_reduced_scale_is_fitted_with_the_box_of_the_frame_as_sent(fit):
    """The box is training's, computed on the frame's own size (480x854 here), not on the smaller image libjpeg
    decodes (whose rounding would move the crop by a pixel of the frame): the view is that box's fractions."""
    frame = np.random.default_rng(5).integers(0, 256, size=(480, 854, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=95)
    fitted = fit_frame(EncodedImage(ImageEncoding.JPEG, buffer.getvalue()), SIZE, BIG, fit)
    box = (crop_box if fit == FrameFit.CROP else pad_box)(480, 854, SIZE)
    assert fitted.view == (box[0] / 480, box[1] / 854, box[2] / 480, box[3] / 854)


# -- the masks --------------------------------------------------------------------------------------------------


def test_crop_masks_are_the_upsampled_masks_inside_the_crop_and_outside_view_beside_it():
    """A 48x96 frame cropped to its middle 48x48: at a 32x64 mask size the crop is columns 16-47. There the soft
    masks are the model's masks upsampled to 32x32 (within 1e-6) and the segmentation their tie-aware argmax;
    beside it the segmentation is exactly 255 and the soft masks exactly 0 (float and uint8)."""
    masks = _softmax_masks(5)
    view = fit_frame(raw(make_video(5, 1, WIDE)[0]), SIZE, BIG, FrameFit.CROP).view
    assert view == (0.0, 0.25, 1.0, 0.5)
    (out, quantised) = mask_outputs(
        masks[[0, 0]],
        [MaskRequest((32, 64), soft=True, view=view), MaskRequest((32, 64), soft=True, soft_uint8=True, view=view)],
    )
    inside = _upsampled(masks[0], (32, 32))
    np.testing.assert_allclose(out.soft_masks[:, :, 16:48], inside, atol=1e-6, rtol=0)
    _assert_segmentation_of(out.segmentation[:, 16:48], inside)
    for side in (np.s_[:, :16], np.s_[:, 48:]):
        assert (out.segmentation[side] == OUTSIDE_VIEW).all()
        assert (out.soft_masks[(slice(None), *side)] == 0).all() and (
            quantised.soft_masks[(slice(None), *side)] == 0
        ).all()
    assert out.segmentation[:, 16:48].max() < K
    np.testing.assert_array_equal(quantised.soft_masks[:, :, 16:48], np.rint(inside * 255).astype(np.uint8))


def test_pad_masks_are_the_frames_slice_of_the_masks_upsampled_to_the_canvas():
    """A 48x96 frame padded to a 96x96 canvas (24 grey rows above and below): the 48x96 masks are rows 24-71 of
    the masks upsampled to 96x96 (within 1e-5), and every pixel belongs to a slot."""
    masks = _softmax_masks(6)
    view = fit_frame(raw(make_video(6, 1, WIDE)[0]), SIZE, BIG, FrameFit.PAD).view
    assert view == (-0.5, 0.0, 2.0, 1.0)
    (out,) = mask_outputs(masks, [MaskRequest(WIDE, soft=True, view=view)])
    expected = _upsampled(masks[0], (96, 96))[:, 24:72]
    np.testing.assert_allclose(out.soft_masks, expected, atol=1e-5, rtol=0)
    assert out.segmentation.max() < K
    _assert_segmentation_of(out.segmentation, expected)


def test_streams_of_one_batch_with_different_views_get_their_own_masks():
    """Outputs of one model call are grouped by size and view: each frame's equal those it gets alone."""
    masks = _softmax_masks(7, (3, K, 12, 12))
    crop, pad = (0.0, 0.25, 1.0, 0.5), (-0.5, 0.0, 2.0, 1.0)
    requests = [
        MaskRequest(WIDE, soft=True, view=crop),
        MaskRequest(WIDE, soft=True, view=pad),
        MaskRequest(WIDE, soft=True),
    ]
    together = mask_outputs(masks[[0, 1, 2]], requests)
    for row, request in enumerate(requests):
        (alone,) = mask_outputs(masks[[row]], [request])
        np.testing.assert_array_equal(together[row].segmentation, alone.segmentation)
        np.testing.assert_array_equal(together[row].soft_masks, alone.soft_masks)
    assert (together[0].segmentation == OUTSIDE_VIEW).any() and not (together[1].segmentation == OUTSIDE_VIEW).any()


# -- end to end -------------------------------------------------------------------------------------------------


def _engine_reference(model_dir: Path, clip: list[np.ndarray], fit: FrameFit) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(slots [K, D], soft masks [K, 48, 96])`` per frame: the engine alone, one frame at a time, on the frames
    fitted here with numpy, and the masks mapped onto the 48x96 frame with ``F.interpolate``."""
    engine = load_engine("torch", model_dir, name="tiny", device="cpu", max_batch_size=1)
    outputs, state = [], None
    for frame in clip:
        tensor = prepare_frame(raw(np.ascontiguousarray(_fitted(frame, fit))), SIZE, BIG)[None]  # [1, 3, H, W]
        out = engine.first_step(tensor) if state is None else engine.step(tensor, state)
        state = out.state
        if fit == FrameFit.CROP:  # the crop is the middle 48x48 of the 48x96 frame
            soft = np.zeros((K, *WIDE), np.float32)
            soft[:, :, 24:72] = _upsampled(out.masks[0], (48, 48))
        else:  # the frame is rows 24-71 of a 96x96 canvas
            soft = _upsampled(out.masks[0], (96, 96))[:, 24:72]
        outputs.append((out.slots[0], soft))
    return outputs


async def _stream(
    target: str, clip: list[np.ndarray], options: StreamOptions
) -> tuple[StreamOptions, list[FrameResult]]:
    async with Client(target) as client:
        stream = await client.open(options)
        results = [await stream.process(frame) for frame in clip]
        await stream.close()
        assert all(isinstance(result, FrameResult) for result in results), results
        assert stream.opened is not None
        return stream.opened.options, results


def test_crop_and_pad_streams_match_the_engine_on_the_fitted_frames(server):
    """A CROP and a PAD stream of 48x96 frames at once (their frames share model calls): slots equal the engine's
    on the fitted frames; a CROP stream's masks are the model's inside the crop and OUTSIDE_VIEW beside it, a PAD
    stream's cover the frame with slots; StreamOpened echoes each fit."""
    clip = make_video(seed=21, frames=6, size=WIDE)

    async def scenario():
        return await asyncio.gather(
            *(
                _stream(server.target, clip, StreamOptions(outputs=ALL_MASKS, mask_size=WIDE, frame_fit=fit))
                for fit in (FrameFit.CROP, FrameFit.PAD)
            )
        )

    for (options, results), fit in zip(run(scenario()), (FrameFit.CROP, FrameFit.PAD), strict=True):
        assert options.frame_fit == fit
        for result, (slots, soft) in zip(results, _engine_reference(server.model_dir, clip, fit), strict=True):
            np.testing.assert_allclose(result.slots, slots, atol=1e-5, rtol=0)
            np.testing.assert_allclose(result.soft_masks, soft, atol=1e-5, rtol=0)
            if fit == FrameFit.CROP:
                assert (result.segmentation[:, :24] == OUTSIDE_VIEW).all()
                assert (result.segmentation[:, 72:] == OUTSIDE_VIEW).all()
                _assert_segmentation_of(result.segmentation[:, 24:72], soft[:, :, 24:72])
            else:
                assert result.segmentation.max() < K
                _assert_segmentation_of(result.segmentation, soft)


def test_large_crop_masks_are_made_after_the_shared_call_with_the_same_rules(server, monkeypatch):
    """Masks over 512x512 are made for their stream alone after the model call: there too the crop (columns
    300-899 of 600x1200) holds the upsampled masks and the sides OUTSIDE_VIEW."""
    made: list[MaskRequest] = []
    original = frame_processing.mask_outputs

    def recording(masks, requests):
        made.extend(requests)
        return original(masks, requests)

    monkeypatch.setattr(frame_processing, "mask_outputs", recording)
    clip = make_video(seed=22, frames=2, size=WIDE)
    size = (600, 1200)
    options = StreamOptions(outputs=ALL_MASKS, mask_size=size, soft_masks_uint8=True, frame_fit=FrameFit.CROP)
    _, results = run(_stream(server.target, clip, options))
    assert len(made) == 2 and all(r.view == (0.0, 0.25, 1.0, 0.5) for r in made)
    assert not any(r.in_shared_call(SHARED_CALL_MAX_PIXELS) for r in made)
    engine = load_engine("torch", server.model_dir, name="tiny", device="cpu", max_batch_size=1)
    state = None
    for frame, result in zip(clip, results, strict=True):
        tensor = prepare_frame(raw(np.ascontiguousarray(frame[:, 24:72])), SIZE, BIG)[None]  # [1, 3, H, W]
        out = engine.first_step(tensor) if state is None else engine.step(tensor, state)
        state = out.state
        inside = _upsampled(out.masks[0], (600, 600))
        assert np.abs(result.soft_masks[:, :, 300:900].astype(int) - np.rint(inside * 255)).max() <= 1
        assert (result.soft_masks[:, :, :300] == 0).all() and (result.soft_masks[:, :, 900:] == 0).all()
        assert (result.segmentation[:, :300] == OUTSIDE_VIEW).all() and (
            result.segmentation[:, 900:] == OUTSIDE_VIEW
        ).all()
        assert result.segmentation[:, 300:900].max() < K


# -- options, wire and server default -----------------------------------------------------------------------------


async def _raw_open(target: str, options) -> tuple[list, grpc.aio.AioRpcError | None]:
    """Open a stream with proto ``options`` and close it at once."""
    open_request = pb.StreamRequest(open=pb.OpenStream(options=options))
    return await raw_exchange(target, open_request, pb.StreamRequest(close=pb.CloseStream()), answer_first=True)


def test_an_unknown_frame_fit_is_refused_and_a_known_one_is_echoed(server):
    responses, error = run(_raw_open(server.target, pb.StreamOptions(frame_fit=7)))
    assert error is not None and not responses
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert dict(error.trailing_metadata() or ()).get(ERROR_CODE_KEY) == ErrorCode.INVALID_OPEN.wire_name
    assert "frame_fit 7 is not FRAME_FIT_STRETCH (1), FRAME_FIT_CROP (2), FRAME_FIT_PAD (3)" in error.details()
    for sent, echoed in ((0, pb.FRAME_FIT_STRETCH), (pb.FRAME_FIT_PAD, pb.FRAME_FIT_PAD)):
        responses, error = run(_raw_open(server.target, pb.StreamOptions(frame_fit=sent)))
        assert error is None and responses[0].opened.options.frame_fit == echoed
    assert [pb.FrameFit.Name(v) for v in (0, 1, 2, 3)] == [f"FRAME_FIT_{fit.name}" for fit in FrameFit]
    # A newer server's fit reaches an older client as UNSPECIFIED instead of breaking the message.
    message = pb.StreamResponse(opened=pb.StreamOpened(options=pb.StreamOptions(frame_fit=9)))
    assert wire.response_from_proto(message).options.frame_fit == FrameFit.UNSPECIFIED


async def _card_and_two_streams(target: str, clip: np.ndarray, own_fit: FrameFit) -> tuple:
    """The server's model card, then ``clip`` streamed at once by a stream that sets no fit and one that sets
    ``own_fit``: ``card, (options, results), (options, results)``."""
    async with Client(target) as client:
        card = await client.describe()
    return card, *await asyncio.gather(
        _stream(target, clip, StreamOptions(mask_size=WIDE)),
        _stream(target, clip, StreamOptions(mask_size=WIDE, frame_fit=own_fit)),
    )


def test_the_server_flag_sets_the_default_fit(start_server):
    """``--frame-fit`` (default auto, also SLOTSTREAM_FRAME_FIT) is what a stream that sets no fit gets; the
    model card and the settings line say which."""
    assert ServiceConfig().frame_fit == "auto"
    assert ServiceConfig.from_sources(["--frame-fit", "pad"], {"SLOTSTREAM_FRAME_FIT": "crop"}).frame_fit == "pad"
    assert ServiceConfig.from_sources([], {"SLOTSTREAM_FRAME_FIT": "crop"}).frame_fit == "crop"
    with pytest.raises(ConfigError, match="--frame-fit must be one of auto, stretch, crop, pad, got 'squash'"):
        ServiceConfig.from_sources([], {"SLOTSTREAM_FRAME_FIT": "squash"})
    server = start_server(frame_fit="crop")
    settings = server.server.effective_settings()
    assert (settings["frame_fit"], settings["frame_fit_from"]) == ("crop", "--frame-fit")
    clip = make_video(seed=23, frames=2, size=WIDE)

    card, (default_options, cropped), (stretch_options, stretched) = run(
        _card_and_two_streams(server.target, clip, FrameFit.STRETCH)
    )
    assert card.preprocessing.startswith(PREPROCESSING) and "CROP" in PREPROCESSING and "PAD" in PREPROCESSING
    assert card.preprocessing.endswith("this server's default frame_fit: crop")
    assert (card.default_frame_fit, card.frame_fit) == ("crop", None)  # the tiny model records no fit
    assert default_options.frame_fit == FrameFit.CROP and stretch_options.frame_fit == FrameFit.STRETCH
    assert all((r.segmentation[:, :24] == OUTSIDE_VIEW).all() for r in cropped)
    assert all(r.segmentation.max() < K for r in stretched)


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_auto_gives_streams_the_fit_the_model_was_trained_with(tmp_path, backend):
    """Under ``--frame-fit auto`` (the default) a stream that sets no fit gets the model's recorded fit, read from
    ``config.json`` (torch) or the export manifest (onnx); a model that records none is stretched; a stream's own
    fit and the server flag still win."""
    from service_helpers import quick_export

    from plugins import VideoSlotModel

    torch.manual_seed(0)
    model = VideoSlotModel(**SERVICE_TINY_MODEL)
    recorded = {}
    for fit in ("crop", None):
        model.frame_fit = fit
        model.save_pretrained(tmp_path / f"model-{fit}")
        folder = tmp_path / f"model-{fit}"
        recorded[fit] = quick_export(folder, tmp_path / f"export-{fit}") if backend == "onnx" else folder
    if backend == "onnx":
        assert json.loads((recorded["crop"] / "manifest.json").read_text())["input"]["frame_fit"] == "crop"
    clip = make_video(seed=24, frames=2, size=WIDE)

    def serve(folder, **overrides):
        server = ServerThread(make_config(folder, backend=backend, **overrides)).start()
        try:
            card, (default_options, results), (own_options, _) = run(
                _card_and_two_streams(server.target, clip, FrameFit.PAD)
            )
            settings = server.server.effective_settings()
        finally:
            server.stop()
        assert own_options.frame_fit == FrameFit.PAD
        return card, default_options.frame_fit, results, (settings["frame_fit"], settings["frame_fit_from"])

    card, default, results, settings = serve(recorded["crop"])
    assert (card.frame_fit, card.default_frame_fit, default) == ("crop", "crop", FrameFit.CROP)
    assert settings == ("crop", "model") and all((r.segmentation[:, :24] == OUTSIDE_VIEW).all() for r in results)
    card, default, results, settings = serve(recorded[None])
    assert (card.frame_fit, card.default_frame_fit, default) == (None, "stretch", FrameFit.STRETCH)
    assert settings == ("stretch", "no record") and all(r.segmentation.max() < K for r in results)
    card, default, _, settings = serve(recorded["crop"], frame_fit="pad")
    assert (card.frame_fit, card.default_frame_fit, default, settings) == (
        "crop",
        "pad",
        FrameFit.PAD,
        ("pad", "--frame-fit"),
    )


def test_crop_is_refused_for_a_model_whose_slot_indices_reach_255(tmp_path):
    """With 256 slots, 255 is a slot: a CROP open is refused with INVALID_OPEN, a PAD open is served."""
    model = tiny_model_config(**{**SERVICE_TINY_MODEL, "num_slots": 256})
    server = ServerThread(make_config(save_tiny_model(tmp_path / "wide-slots", model), max_batch_size=1)).start()
    try:

        async def scenario(fit):
            async with Client(server.target) as client:
                stream = await client.open(StreamOptions(frame_fit=fit))
                await stream.close()
                assert stream.opened is not None
                return stream.opened.options

        with pytest.raises(StreamError) as error:
            run(scenario(FrameFit.CROP))
        assert error.value.code == ErrorCode.INVALID_OPEN
        assert (
            "marks the pixels outside the crop with 255" in error.value.message and "256 slots" in error.value.message
        )
        assert run(scenario(FrameFit.PAD)).frame_fit == FrameFit.PAD
    finally:
        server.stop(0.5)


# -- the command-line client --------------------------------------------------------------------------------------


def test_stream_command_takes_a_frame_fit_and_its_areas_leave_out_the_outside(server, tmp_path, capsys):
    """``--frame-fit crop`` on 48x96 frames: the JSON-line and trajectory areas are shares of the whole frame and
    sum to the crop's share (1/2); with ``pad`` they sum to 1. A fit that does not exist is an argparse error."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for index, frame in enumerate(make_video(seed=24, frames=3, size=WIDE)):
        Image.fromarray(frame).save(folder / f"{index:04d}.png")
    for fit, share in (("crop", 0.5), ("pad", 1.0)):
        jsonl, slots, gif = tmp_path / f"{fit}.jsonl", tmp_path / f"{fit}.npz", tmp_path / f"{fit}.gif"
        args = ["stream", str(folder), "--target", server.target, "--frame-fit", fit]
        assert main([*args, "--jsonl", str(jsonl), "--slots", str(slots), "--out", str(gif)]) == 0
        lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
        assert len(lines) == 3 and all(abs(sum(line["areas"]) - share) < 1e-4 for line in lines), lines
        with np.load(slots) as saved:
            np.testing.assert_allclose(saved["areas"].sum(axis=1), share, atol=1e-5)
        with Image.open(gif) as image:
            assert image.n_frames == 3 and image.size == (96, 48)


def test_stream_command_refuses_an_unknown_frame_fit(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["stream", "synthetic:1", "--frame-fit", "squash"])
    assert exit_.value.code == 2 and "invalid choice: 'squash'" in capsys.readouterr().err


def test_overlay_and_areas_leave_outside_view_pixels_alone():
    """255 beside a crop: the overlay keeps the frame's own colours there (no slot colour, no boundary) and the
    areas count those pixels in the frame but in no slot."""
    frame = np.full((4, 6, 3), 100, np.uint8)
    segmentation = np.array([[255, 0, 0, 1, 1, 255]] * 4, np.uint8)
    overlay = render_overlay(frame, segmentation, (7, 3), alpha=1.0)
    np.testing.assert_array_equal(overlay[:, [0, 5]], frame[:, [0, 5]])
    np.testing.assert_allclose(overlay[0, 1], slot_colours([7])[0] * 0.4, atol=1)  # the crop's edge is a boundary
    np.testing.assert_allclose(overlay[0, 3], slot_colours([3])[0] * 0.4, atol=1)  # between slots 0 and 1
    np.testing.assert_array_equal(overlay[:, [2, 4]], slot_colours([7, 3])[None].repeat(4, axis=0))
    np.testing.assert_allclose(slot_areas(segmentation, 2), [8 / 24, 8 / 24])
