"""The :class:`Engine` contract, checked for every backend in ``service_helpers.BACKENDS``.

A new backend passes by loading the same tiny model (the accelerated ones its export); the gRPC-level
conformance of every backend is in ``tests/export/test_backend_conformance.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
from service_helpers import SERVICE_TINY_MODEL

from service.engine import BackendUnavailable, Engine, load_engine


@pytest.fixture
def engine(backend, request) -> Engine:
    name, device = backend
    directory = request.getfixturevalue("model_dir" if name == "torch" else "exported_model_dir")
    # Backends that cannot run here are skipped by their parameter's marks; one that is installed must load
    # (on a GPU machine a broken CUDA or TensorRT install fails here instead of hiding behind a skip).
    return load_engine(name, directory, name="tiny", device=device, max_batch_size=8)


def _frames(batch: int, seed: int = 0) -> np.ndarray:
    height, width = SERVICE_TINY_MODEL["image_size"]
    return np.random.default_rng(seed).random((batch, 3, height, width), dtype=np.float32)


def test_card_describes_the_model(engine):
    card = engine.card
    assert card.image_size == tuple(SERVICE_TINY_MODEL["image_size"])
    assert (card.num_slots, card.slot_dim) == (SERVICE_TINY_MODEL["num_slots"], SERVICE_TINY_MODEL["slot_dim"])
    assert card.max_batch_size == 8 and len(card.version) == 12 and card.preprocessing


def test_shapes_and_mask_normalization(engine):
    k, d = engine.card.num_slots, engine.card.slot_dim
    h, w = engine.card.mask_size
    first = engine.first_step(_frames(3))
    later = engine.step(_frames(3, seed=1), first.state)
    for out in (first, later):
        assert out.slots.shape == (3, k, d) and out.state.shape == (3, k, d)
        assert out.masks.shape == (3, k, h, w)
        assert all(a.dtype == np.float32 for a in (out.slots, out.masks, out.state))
        assert np.isfinite(out.slots).all() and np.isfinite(out.masks).all()
        np.testing.assert_allclose(out.masks.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("batch", [2, 5, 8])
def test_rows_of_a_batch_equal_calls_on_each_row_alone(engine, batch):
    """What lets streams share model calls: batching never mixes rows."""
    frames, later = _frames(batch), _frames(batch, seed=2)
    first = engine.first_step(frames)
    stepped = engine.step(later, first.state)
    for row in range(batch):
        alone = engine.first_step(frames[row : row + 1])
        np.testing.assert_allclose(first.slots[row], alone.slots[0], atol=1e-5)
        np.testing.assert_allclose(first.masks[row], alone.masks[0], atol=1e-5)
        alone_next = engine.step(later[row : row + 1], alone.state)
        np.testing.assert_allclose(stepped.slots[row], alone_next.slots[0], atol=1e-5)
        np.testing.assert_allclose(stepped.state[row], alone_next.state[0], atol=1e-5)


def test_deterministic(engine):
    frames = _frames(2)
    a, b = engine.first_step(frames), engine.first_step(frames)
    np.testing.assert_array_equal(a.slots, b.slots)
    np.testing.assert_array_equal(engine.step(frames, a.state).slots, engine.step(frames, b.state).slots)


def test_state_carries_the_recurrence(engine):
    """A later frame's result depends on the state passed in (the engine is not stateless per call), by far more
    than the 1e-5 the isolation and resume tests compare at, so those tests can see a wrong state."""
    frames = _frames(1)
    state = engine.first_step(frames).state
    other = engine.first_step(_frames(1, seed=5)).state
    assert np.abs(engine.step(frames, state).slots - engine.step(frames, other).slots).max() > 1e-3


def test_warmup_runs_every_batch_size(engine, monkeypatch):
    """Both graphs run at every batch size the batcher will use, so shape-specialised backends (TensorRT
    profiles, CUDA graphs) never compile on a live frame."""
    calls: list[tuple[str, int]] = []
    for name in ("first_step", "step"):
        method = getattr(engine, name)

        def recorded(frames, *rest, _method=method, _name=name):
            calls.append((_name, len(frames)))
            return _method(frames, *rest)

        monkeypatch.setattr(engine, name, recorded)
    engine.warmup([1, engine.card.max_batch_size])
    sizes = [1, engine.card.max_batch_size]
    assert {size for name, size in calls if name == "first_step"} == set(sizes)
    assert {size for name, size in calls if name == "step"} == set(sizes)


def test_unknown_backend_names_the_choices(model_dir):
    with pytest.raises(BackendUnavailable, match="choose one of torch"):
        load_engine("tflite", model_dir, name="x", device="cpu", max_batch_size=1)


def test_backend_without_a_module_says_so(model_dir, monkeypatch):
    from service import engine as engine_module

    monkeypatch.setitem(engine_module.BACKEND_MODULES, "future", "service.backends.not_there")
    with pytest.raises(BackendUnavailable, match="not part of this installation"):
        load_engine("future", model_dir, name="x", device="cpu", max_batch_size=1)
