"""A resume token resumes someone's stream: like the auth token, it is left out of the ``repr`` of the messages
that carry it (a log line or a test failure printing one shows no secret), and still compared and kept."""

from __future__ import annotations

from service.types import OpenKind, OpenRequest, ResumeRequest, StreamOpened, StreamOptions

TOKEN = "resume-secret-7f3a"


def test_the_messages_carrying_a_resume_token_do_not_show_it() -> None:
    opened = StreamOpened(
        stream_id="cam-1",
        resume_token=TOKEN,
        model="default",
        model_version="v1",
        options=StreamOptions(),
        kind=OpenKind.NEW,
        last_frame_index=None,
        slot_ids=(0, 1),
    )
    resume = ResumeRequest(resume_token=TOKEN, last_frame_index=4)
    for message in (opened, resume, OpenRequest(stream_id="cam-1", resume=resume)):
        shown = repr(message)
        assert TOKEN not in shown and "resume_token" not in shown, shown
    assert "stream_id='cam-1'" in repr(opened) and "last_frame_index=4" in repr(resume)
    assert opened.resume_token == resume.resume_token == TOKEN
    assert resume != ResumeRequest(resume_token="another", last_frame_index=4)
