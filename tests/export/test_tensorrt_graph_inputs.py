"""``build_engine`` refuses a graph whose inputs are not those the manifest records for its step (an export whose
graph files and digests were swapped), before TensorRT builds anything. TensorRT is not installable on machines
without a GPU, so its builder and parser are stood in for by the few calls ``build_engine`` makes before that
check; the check itself is ours."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from service.backends.tensorrt_backend import BuildSpec, build_engine


class _Network:
    def __init__(self, names: list[str]) -> None:
        self._names = names
        self.num_inputs = len(names)

    def get_input(self, index: int) -> SimpleNamespace:
        return SimpleNamespace(name=self._names[index])


def _tensorrt_parsing(names: list[str]) -> SimpleNamespace:
    """A stand-in ``tensorrt`` module whose parser yields a network with inputs ``names``; building is refused
    (this test must never get that far)."""
    network = _Network(names)

    class Builder:
        def __init__(self, logger: object) -> None:
            pass

        def create_network(self, flags: int) -> _Network:
            return network

        def create_builder_config(self) -> None:
            raise AssertionError("build_engine went on to build an engine")

    class OnnxParser:
        def __init__(self, network: _Network, logger: object) -> None:
            self.num_errors = 0

        def parse_from_file(self, path: str) -> bool:
            return True

    return SimpleNamespace(Builder=Builder, OnnxParser=OnnxParser)


def _spec(graph: str, inputs: dict[str, tuple[int, ...]]) -> BuildSpec:
    return BuildSpec(graph, "0" * 64, inputs, max_batch_size=4, fp16=False, tensorrt_version="10", gpu="test")


def test_a_step_graph_filed_as_first_step_is_refused_naming_both(tmp_path):
    trt = _tensorrt_parsing(["frames", "prev_slots"])
    spec = _spec("first_step", {"frames": (3, 64, 64)})
    with pytest.raises(RuntimeError) as refused:
        build_engine(trt, None, tmp_path / "first_step.onnx", spec, tmp_path, 64)
    message = str(refused.value)
    assert "takes ['frames', 'prev_slots']" in message and "records ['frames'] for the first_step graph" in message
    assert "re-run python -m training.export" in message


def test_a_graph_with_its_own_inputs_goes_on_to_the_build(tmp_path):
    trt = _tensorrt_parsing(["frames", "prev_slots"])
    spec = _spec("step", {"frames": (3, 64, 64), "prev_slots": (7, 64)})
    with pytest.raises(AssertionError, match="went on to build"):
        build_engine(trt, None, tmp_path / "step.onnx", spec, tmp_path, 64)
