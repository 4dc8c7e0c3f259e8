"""A served stream of mono JPEG, grayscale, 16-bit, alpha, bilevel or CMYK frames gets the results of the same
frames sent as RGB (their counterparts built in ``test_images_modes.py``, independently of the server)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from service_helpers import make_video, reference_outputs, run
from test_images_modes import MODES, encode, gray_of, replicate
from test_stream_service import assert_matches

from service.client import Client, FrameFit, FrameResult, StreamOptions
from service.types import EncodedImage, ImageEncoding


async def _serve(target: str, images: list[EncodedImage], options: StreamOptions | None = None) -> list[FrameResult]:
    async with Client(target) as client:
        stream = await client.open(options or StreamOptions())
        results = [await stream.process(image) for image in images]
        await stream.close()
    for result in results:
        assert isinstance(result, FrameResult), result
    return results


@pytest.mark.parametrize("mode", list(MODES))
def test_each_image_mode_is_served_as_its_rgb_counterpart(server, mode):
    clip = make_video(seed=31, frames=3)
    encoded = [MODES[mode](frame) for frame in clip]
    reference = reference_outputs(server.model_dir, [rgb for _, rgb in encoded])
    assert_matches(run(_serve(server.target, [image for image, _ in encoded])), reference)


@pytest.mark.parametrize("fit", [FrameFit.STRETCH, FrameFit.CROP, FrameFit.PAD], ids=lambda fit: fit.name)
def test_large_mono_jpegs_are_served_like_the_same_grey_in_colour_jpegs(server, fit):
    """Frames large enough for the reduced-scale JPEG decode (200x240 for a 24x24 model): a mono camera's stream
    and one sending the same grey as colour JPEGs (flat chroma, so equal pixels at every scale) agree exactly."""
    grays = [np.kron(gray_of(frame)[:25, :30], np.ones((8, 8), np.uint8)) for frame in make_video(seed=32, frames=3)]
    mono = [EncodedImage(ImageEncoding.JPEG, encode(Image.fromarray(gray), "JPEG")) for gray in grays]
    twins = [EncodedImage(ImageEncoding.JPEG, encode(Image.fromarray(replicate(gray)), "JPEG")) for gray in grays]
    options = StreamOptions(frame_fit=fit)
    got = run(_serve(server.target, mono, options))
    expected = run(_serve(server.target, twins, options))
    assert_matches(got, [(result.slots, result.segmentation) for result in expected])
