"""The load generator times the server, not the client's JPEG encoding: each clip frame is encoded once, before
any frame is timed, and the timed sends get the encoded bytes."""

from __future__ import annotations

from service_helpers import make_video, run

from service.bench.remote import LoadSpec, run_load
from service.client.encoding import encode_image
from service.client.stream import ClientStream
from service.types import EncodedImage, ImageEncoding


def test_jpeg_frames_are_encoded_once_before_the_sends(server, monkeypatch):
    sent: list[tuple[object, int | None]] = []
    real_send = ClientStream.send

    async def recording(self, image, **options):
        sent.append((image, options.get("jpeg_quality")))
        return await real_send(self, image, **options)

    monkeypatch.setattr(ClientStream, "send", recording)
    clip = make_video(seed=41, frames=3, size=(32, 32))
    spec = LoadSpec(server.target, streams=2, frames=5, warmup_frames=2, jpeg_quality=80)
    load = run(run_load(spec, clip))
    assert load.results == 10 and sum(counts.errors for counts in load.streams) == 0
    assert len(sent) == 2 * (5 + 2)
    assert all(quality is None for _, quality in sent), "nothing left to encode in the send"
    images = [image for image, _ in sent]
    assert all(isinstance(image, EncodedImage) and image.encoding == ImageEncoding.JPEG for image in images)
    assert len({id(image) for image in images}) == len(clip), "one encoding per clip frame, shared by every send"
    encoded = {image.data for image in images}
    assert encoded == {encode_image(frame, 80).data for frame in clip}
