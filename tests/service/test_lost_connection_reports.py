"""grpc.aio reports a write that meets a connection already gone as INTERNAL "Internal error from Core"
(grpc/grpc#36066), at times while the channel still reads READY: the client calls it a lost connection all the
same, so ``--reconnect`` and ``error.connection_lost`` see it; a server's own INTERNAL stays what it is."""

from __future__ import annotations

import grpc

from service.client import OpenKind, StreamError, StreamOpened, StreamOptions
from service.client.explain import explained


class _ReadyChannel:
    """A channel whose cached state still reads READY, as right after its socket died."""

    def get_state(self) -> grpc.ChannelConnectivity:
        return grpc.ChannelConnectivity.READY


OPENED = StreamOpened("s", "t", "m", "v", StreamOptions(resume_window_s=30), OpenKind.NEW, None, (0, 1))


def test_grpcs_core_write_error_is_a_lost_connection_while_the_channel_still_reads_ready():
    error = StreamError(grpc.StatusCode.INTERNAL, None, "Internal error from Core")
    lost = explained(error, _ReadyChannel(), OPENED, None)
    assert lost.status == grpc.StatusCode.UNAVAILABLE and lost.connection_lost, lost
    assert "the connection was lost" in str(lost)


def test_a_servers_own_internal_error_on_a_ready_channel_stays_internal():
    error = StreamError(grpc.StatusCode.INTERNAL, None, "the model raised")
    kept = explained(error, _ReadyChannel(), OPENED, None)
    assert kept.status == grpc.StatusCode.INTERNAL and not kept.connection_lost
