"""``stream_frames`` takes each frame alone or with its capture time, as an ``(image, capture_time_ns)`` pair, and
sends that time (the answers echo it) as ``ClientStream.send`` does; a frame alone, or a pair whose time is ``None``,
is sent with the moment it is sent. A pair of the wrong shape or a time that is not an integer is refused naming the
frame."""

from __future__ import annotations

import time

import numpy as np
import pytest
from service_helpers import make_video

from service.client import FrameResult, StreamOptions, TimedFrame, encode_image, stream_frames


def test_pairs_send_their_capture_times_and_images_alone_the_moment_they_are_sent(server):
    clip = make_video(seed=95, frames=4)
    frames: list[np.ndarray | TimedFrame] = [
        (clip[0], 1_000),
        clip[1],
        (clip[2], None),
        (clip[3], np.int64(2**62)),  # a NumPy integer, as a camera's timestamps array gives it
    ]
    before = time.time_ns()
    answers = list(stream_frames(server.target, frames))
    after = time.time_ns()
    assert [type(answer) for answer in answers] == [FrameResult] * 4
    times = [answer.capture_time_ns for answer in answers]
    assert times[0] == 1_000 and times[3] == 2**62
    assert before <= times[1] <= times[2] <= after, (before, times, after)


def test_pairs_of_encoded_images_and_a_live_stream_keep_their_times(server):
    """JPEG bytes in pairs, in live mode (every frame sent as the iterator gives it)."""
    clip = make_video(seed=96, frames=3)
    frames = ((encode_image(frame, 90).data, 10**18 + index) for index, frame in enumerate(clip))
    answers = list(stream_frames(server.target, frames, StreamOptions(live=True)))
    assert {answer.frame_index: answer.capture_time_ns for answer in answers} == {
        answer.frame_index: 10**18 + answer.frame_index for answer in answers
    }
    assert len(answers) == 3


PAIR = "an (image, capture_time_ns) pair"


@pytest.mark.parametrize(
    ("after_the_image", "error", "message"),
    [
        ((5, "cam"), ValueError, f"frame 1: a frame is an image or {PAIR}, got a tuple of 3"),
        ((), ValueError, f"frame 1: a frame is an image or {PAIR}, got a tuple of 1"),
        ((1.5e18,), TypeError, f"frame 1: the capture time of {PAIR} must be an integer"),
        ((True,), TypeError, f"frame 1: the capture time of {PAIR} must be an integer"),
        ((2**63,), ValueError, "capture_time_ns must fit in a signed 64-bit integer"),
    ],
)
def test_a_bad_pair_is_refused_naming_the_frame_after_the_answers_to_the_frames_before_it(
    server, after_the_image, error, message
):
    clip = make_video(seed=97, frames=2)
    answers = []
    with pytest.raises(error) as refused:
        for answer in stream_frames(server.target, [clip[0], (clip[1], *after_the_image)]):
            answers.append(answer)
    assert message in str(refused.value), refused.value
    assert [answer.frame_index for answer in answers] == [0]
