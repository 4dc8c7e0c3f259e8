"""The batch sizes the server warms an engine up at: 1 and the largest, or every size from 1 to the largest for an
engine whose first call at a new batch size does one-off work (``Engine.tunes_per_batch_size``: cuDNN's exhaustive
algorithm search in ONNX Runtime's CUDA provider), so that no live frame pays for it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from service.backends.torch_backend import TorchEngine, load_engine
from service.runner import ModelRunner


class RecordingEngine(TorchEngine):
    """The tiny model in the torch backend, saying whether it tunes per batch size, recording its warm-ups."""

    def __init__(self, inner: TorchEngine, tunes: bool) -> None:
        super().__init__(inner.model, inner.card)
        self._tunes = tunes
        self.warm_ups: list[list[int]] = []

    @property
    def tunes_per_batch_size(self) -> bool:
        return self._tunes

    def warmup(self, batch_sizes: Sequence[int]) -> None:
        self.warm_ups.append(list(batch_sizes))
        super().warmup(batch_sizes)


def warm_up(engine: RecordingEngine, max_batch_size: int) -> None:
    async def scenario() -> None:
        runner = ModelRunner(engine, max_batch_size=max_batch_size, max_delay_s=0.0)
        await runner.warm_up()
        await runner.close()

    asyncio.run(scenario())


@pytest.mark.parametrize(("tunes", "sizes"), [(False, [1, 4]), (True, [1, 2, 3, 4])])
def test_warm_up_covers_every_batch_size_of_an_engine_that_tunes_per_batch_size(model_dir, tunes, sizes):
    engine = RecordingEngine(load_engine(model_dir, name="tiny", device="cpu", max_batch_size=4), tunes)
    warm_up(engine, max_batch_size=8)  # capped by the engine's own largest batch
    assert engine.warm_ups == [sizes]


def test_engines_do_not_tune_per_batch_size_unless_they_say_so(model_dir):
    assert not load_engine(model_dir, name="tiny", device="cpu", max_batch_size=2).tunes_per_batch_size
