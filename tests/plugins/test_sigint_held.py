"""``plugins.signals.sigint_held``: Ctrl-C held back for a block, then delivered to the right handler."""

from __future__ import annotations

import signal

import pytest

from plugins.signals import sigint_held, signals_held
from training.stop_request import StopRequest


@pytest.fixture(autouse=True)
def python_handles_ctrl_c():
    """Ctrl-C handled by Python's default handler for the test, whatever the run inherited (a background job, as
    under ``make test &``, starts with SIGINT ignored, which ``sigint_held`` and a stop request leave alone)."""
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, inherited)


def test_ctrl_c_in_the_block_is_raised_after_it() -> None:
    finished = []
    with pytest.raises(KeyboardInterrupt), sigint_held():
        signal.raise_signal(signal.SIGINT)
        finished.append(True)  # the block is not cut short
    assert finished == [True]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_signals_held_together_are_delivered_after_the_block_in_the_order_they_came() -> None:
    """How a server child is started: a SIGTERM while it is made must reach the handler only once the child is
    recorded, so that the handler's unwinding stops it."""
    delivered = []

    def on_term(number, frame):  # type: ignore[no-untyped-def]
        delivered.append("term")

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        with pytest.raises(KeyboardInterrupt), signals_held(signal.SIGINT, signal.SIGTERM):
            signal.raise_signal(signal.SIGTERM)
            signal.raise_signal(signal.SIGINT)
            delivered.append("block done")
        assert delivered == ["block done", "term"]
        assert signal.getsignal(signal.SIGTERM) is on_term
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_handler_the_block_puts_in_place_is_kept() -> None:
    """A stop request whose first signal (SIGTERM, not held) restores the earlier handlers inside the block: the
    held-back handler it replaced is not put back over them, so a Ctrl-C after the block acts at once."""
    with StopRequest() as stop:
        with sigint_held():
            signal.raise_signal(signal.SIGTERM)  # recorded; the stop request puts the default handlers back
        assert stop.signal_number == signal.SIGTERM
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert stop.signal_number == signal.SIGTERM


def test_a_command_stopped_by_ctrl_c_ends_with_one_line_and_status_130(capsys) -> None:
    from plugins.signals import exit_status_of

    def interrupted() -> int:
        raise KeyboardInterrupt

    assert exit_status_of(interrupted, "python -m training.evaluate") == 130
    assert capsys.readouterr().err == "python -m training.evaluate: interrupted\n"
    assert exit_status_of(lambda: 3, "x") == 3


def test_a_command_whose_reader_stopped_ends_quietly_with_status_141(capsys) -> None:
    from plugins.signals import exit_status_of

    def piped() -> int:
        raise BrokenPipeError

    assert exit_status_of(piped, "python -m plugins") == 141
    assert capsys.readouterr().err == ""
