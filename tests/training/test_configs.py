"""Every shipped training config builds and trains for a few steps on the CPU (tiny overrides)."""

from __future__ import annotations

import dataclasses

import pytest

from training.configs import available, get_config
from training.loop import fit

SHIPPED = available()


def test_the_required_experiments_are_shipped() -> None:
    required = {"tiny", "smoothsa_cnn", "savi_cnn", "smoothsa_cnn_1p1", "smoothsa_cnn_3p3"}
    assert required | {"smoothsa_cnn_no_preheat", "smoothsa_dinov2"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_config_documents_what_it_reproduces(name: str) -> None:
    import importlib

    module = importlib.import_module(f"training.configs.{name}")
    assert module.__doc__ and len(module.__doc__.split()) > 15
    assert get_config(name).name == name


@pytest.mark.parametrize("name", SHIPPED)
def test_config_trains_a_few_steps(name: str, tmp_path) -> None:
    config = get_config(name)
    data = dataclasses.replace(
        config.data, batch_size=2, clip_length=2, num_workers=0, val_videos=1, val_frames=2, spec="synthetic:easy"
    )
    if name == "smoothsa_dinov2":
        data = dataclasses.replace(data, batch_size=1)
    config = dataclasses.replace(config, data=data, steps=2, eval_every=2, checkpoint_every=2, log_every=1)
    result = fit(config, tmp_path, progress=False)
    assert result.step == 2 and result.model_dir is not None
    assert (result.model_dir / "model.safetensors").is_file()
    assert result.scores is not None and result.scores.num_videos == 1


def test_unknown_config_lists_the_shipped_ones() -> None:
    with pytest.raises(KeyError, match="smoothsa_cnn"):
        get_config("smoothsa")
