"""What a saved model directory holds, how its ``config.json`` is read, and what to say when it is wrong.

:meth:`~plugins.model.VideoSlotModel.save_pretrained` writes :data:`CONFIG_FILE` and :data:`WEIGHTS_FILE`;
:meth:`~plugins.model.VideoSlotModel.from_pretrained` reads them back. Only the standard library is imported here,
so serving and export code can name the files, read the config and explain a training run folder given in place
of a model without loading torch.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from plugins.frame_fit import FRAME_FITS, FrameFitName

CONFIG_FILE = "config.json"
"""The architecture, the plugins and the input's frame fit (JSON)."""
WEIGHTS_FILE = "model.safetensors"
"""The weights (safetensors)."""
FORMAT_VERSION = 1
"""The ``format_version`` of :data:`CONFIG_FILE` that this code writes and reads."""

EXPORT_MANIFEST_FILE = "manifest.json"
"""What an export folder describes its graphs in (``service.backends.manifest``)."""

RUN_BEST_MODEL_DIR = "best"
"""Where a training run keeps the model of its best evaluation (``training.best``)."""
RUN_FINAL_MODEL_DIR = "model"
"""Where a finished training run keeps its final model (``training.loop``)."""
RUN_FOLDER_MODELS = ((RUN_BEST_MODEL_DIR, "its best evaluation"), (RUN_FINAL_MODEL_DIR, "its final model"))
"""The model folders a training run writes (``training.run``), with what each holds, in the order to suggest them."""
RUN_CHECKPOINTS_DIR = "checkpoints"
"""Where a training run keeps its checkpoints, ``step-<N>/`` folders each holding a model directory
(``training.checkpoint``)."""
_CHECKPOINT_NAME = re.compile(r"^step-(\d+)$")

#: One line of PyTorch's ``load_state_dict`` report of a tensor whose shape differs from the model's.
_SIZE_MISMATCH = re.compile(
    r"size mismatch for (?P<name>\S+): copying a param with shape torch\.Size\((?P<saved>\[[^\]]*\])\) from "
    r"checkpoint, the shape in current model is torch\.Size\((?P<model>\[[^\]]*\])\)"
)
#: How many mismatched tensors :func:`weights_mismatch_message` names.
MISMATCH_EXAMPLES = 3

MAX_JSON_NESTING = 100
"""How many levels deep the arrays and objects of a ``config.json`` or ``manifest.json`` may nest
(:func:`parse_json`): the files this project writes nest a few. Far deeper values exhaust Python's recursion limit
in the parser or in the code that reads them (a file of 200,000 ``[`` does in the parser, one of 500 in the
model's constructor)."""


def model_files(directory: str | os.PathLike[str]) -> tuple[Path, Path]:
    """The config and weights files of the model directory ``directory``, both checked to exist.

    Raises:
        FileNotFoundError: the directory or a file in it is missing (the message names it; for a training run
            folder, it names the run's models to pass instead, see :func:`run_folder_hint`).
        PermissionError: a file is there but this process may not read it.
    """
    path = Path(directory)
    if not path.is_dir():
        what = "is a file, not a model directory" if path.exists() else "does not exist"
        raise FileNotFoundError(f"{path} {what}: a model directory holds {CONFIG_FILE} and {WEIGHTS_FILE}")
    config_path, weights_path = path / CONFIG_FILE, path / WEIGHTS_FILE
    for required in (config_path, weights_path):
        if not required.is_file():
            hint = run_folder_hint(path)
            raise FileNotFoundError(
                f"{required} not found: a model directory holds {CONFIG_FILE} and {WEIGHTS_FILE}{hint}"
            )
        if not os.access(required, os.R_OK):  # safetensors would call it missing
            raise PermissionError(f"{required}: cannot read it (user {os.getuid()} may not: check its mode)")
    return config_path, weights_path


def read_model_config(config_path: Path) -> Mapping[str, Any]:
    """The payload of a saved ``config.json``: ``format_version``, the ``model`` section and the optional rest.

    Raises:
        ValueError: the file is not UTF-8 JSON, nests deeper than :data:`MAX_JSON_NESTING` levels
            (:func:`parse_json`), or is not an object of format :data:`FORMAT_VERSION` with a ``model`` object (the
            message names the file and what is wrong).
    """
    try:
        payload = parse_json(config_path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise ValueError(f"{config_path} is not valid UTF-8 JSON: {error}") from error
    except ValueError as error:  # not JSON, or nested too deeply: parse_json's message says which
        raise ValueError(f"{config_path}: {error}") from error
    if not isinstance(payload, Mapping):
        raise ValueError(f"{config_path}: expected a JSON object with format_version {FORMAT_VERSION}, got JSON text")
    problem = format_version_problem(payload.get("format_version"), FORMAT_VERSION, "model config")
    if problem is not None:
        raise ValueError(f"{config_path}: {problem}")
    if not isinstance(payload.get("model"), Mapping):
        raise ValueError(f"{config_path}: expected a 'model' section (an object), as save_pretrained writes")
    return payload


def format_version_problem(found: object, expected: int, what: str) -> str | None:
    """Why a file's ``format_version`` (``found``; ``None`` when the file has none) is not ``expected``, saying
    what to do: a newer version needs a newer slotstream; a file without one is not a ``what`` slotstream wrote.
    ``None`` when it is ``expected``."""
    if found == expected and not isinstance(found, bool):
        return None
    if found is None:
        article = "an" if what[:1].lower() in "aeiou" else "a"
        return f"no format_version: not {article} {what} written by slotstream (format_version {expected})"
    if isinstance(found, int) and not isinstance(found, bool) and found > expected:
        return (
            f"format_version {found} was written by a newer slotstream; this one reads format_version {expected}: "
            "upgrade slotstream to load it"
        )
    return f"format_version {found!r} is not one slotstream writes (this one reads format_version {expected})"


def parse_json(text: str) -> Any:
    """``text`` parsed as JSON, its arrays and objects checked to nest at most :data:`MAX_JSON_NESTING` levels
    deep, for a file that may come from anyone (a model directory, an export directory).

    Raises:
        ValueError: ``"not valid JSON: ..."`` (the parser's message; also for an integer of more digits than
            Python converts), or ``"its arrays and objects nest ..."`` for a value nested too deeply, parsed or
            not (the parser itself runs out of Python's recursion limit on thousands of levels). The message says
            what is wrong; callers put the file's path before it.
    """
    too_deep = (
        f"its arrays and objects nest more than {MAX_JSON_NESTING} levels deep (the files this project writes nest "
        "a few), which is refused: reading them would exhaust Python's recursion limit"
    )
    try:
        value = json.loads(text)
    except RecursionError as error:
        raise ValueError(too_deep) from error
    except ValueError as error:  # JSONDecodeError, or an integer longer than int() converts
        raise ValueError(f"not valid JSON: {error}") from error
    if _nests_deeper(value, MAX_JSON_NESTING):
        raise ValueError(too_deep)
    return value


def _nests_deeper(value: Any, levels: int) -> bool:
    """Whether the lists and dicts of the parsed JSON ``value`` nest more than ``levels`` deep (a list or dict is
    one level, what it holds the next). Walked without recursion, so any depth is measured."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > levels:
            return True
        pending.extend((child, depth + 1) for child in children)
    return False


def recorded_frame_fit(payload: Mapping[str, Any], config_path: Path) -> FrameFitName | None:
    """The ``input.frame_fit`` of a saved ``config.json`` (``None`` when it has no ``input`` section).

    Raises:
        ValueError: the section is not an object or names no known frame fit (the message names the file).
    """
    section = payload.get("input")
    if section is None:
        return None
    if not isinstance(section, Mapping):
        raise ValueError(f"{config_path}: its 'input' section must be an object, got {section!r}")
    fit = section.get("frame_fit")
    if fit is not None and fit not in FRAME_FITS:
        raise ValueError(f"{config_path}: input.frame_fit must be one of {', '.join(FRAME_FITS)} or null, got {fit!r}")
    return cast(FrameFitName | None, fit)


def weights_mismatch_message(weights: str, config: str, report: str) -> str | None:
    """One line for weights whose tensors have other shapes than the config describes (another model's config).

    For weights saved with the config itself, whose plugin's code changed since, :mod:`plugins.pretrained` says
    that instead (the plugin, both versions and how to go back) around :func:`mismatch_summary`.

    Args:
        weights: how to name the weights file in the message (a path, or just its name).
        config: how to name the config file.
        report: the text of PyTorch's ``load_state_dict`` error (one ``size mismatch for ...`` line per tensor).

    Returns:
        How many tensors differ, the first :data:`MISMATCH_EXAMPLES` of them (saved shape against the config's)
        and the fix; ``None`` when ``report`` names no tensor of another shape (a damaged file, say).
    """
    summary = mismatch_summary(report)
    if summary is None:
        return None
    return (
        f"{weights} does not fit {config}: {summary}. The two files belong to different models: put back the "
        f"{CONFIG_FILE} saved with these weights"
    )


def mismatch_summary(report: str, than: str = "the config describes", label: str = "config") -> str | None:
    """``"N tensors have other shapes than the config describes: NAME (weights [..], config [..]), ... and M
    more"`` for PyTorch's ``load_state_dict`` error ``report`` (the first :data:`MISMATCH_EXAMPLES` tensors named);
    ``None`` when it names no tensor of another shape (:func:`size_mismatches`).

    Args:
        report: PyTorch's error text.
        than: what the model's shapes come from, after "other shapes than".
        label: how each example names the model's shape, against the weights'.
    """
    mismatches = size_mismatches(report)
    if not mismatches:
        return None
    examples = ", ".join(
        f"{name} (weights {saved}, {label} {shape})" for name, saved, shape in mismatches[:MISMATCH_EXAMPLES]
    )
    more = f" and {len(mismatches) - MISMATCH_EXAMPLES} more" if len(mismatches) > MISMATCH_EXAMPLES else ""
    return f"{len(mismatches)} tensors have other shapes than {than}: {examples}{more}"


def size_mismatches(report: str) -> list[tuple[str, str, str]]:
    """The tensors PyTorch's ``load_state_dict`` error ``report`` says have another shape in the file than in the
    model, as (name, shape in the file, shape in the model), e.g. ``("transition.lin.weight", "[32, 32]",
    "[32, 33]")``; empty for any other error (a damaged file, say)."""
    return [(name, saved, shape) for name, saved, shape in _SIZE_MISMATCH.findall(report)]


def run_folder_models(folder: str | os.PathLike[str]) -> list[Path]:
    """The models of a training run folder given where a model directory was expected.

    Returns:
        Those of ``folder / name`` for the names of :data:`RUN_FOLDER_MODELS` that hold a ``config.json``, in
        that order; when there are none (a run stopped before its first evaluation), its newest checkpoint that
        holds a model (:func:`newest_run_checkpoint`), if any. An empty list when ``folder`` holds a
        ``config.json`` itself.
    """
    path = Path(folder)
    if (path / CONFIG_FILE).exists():
        return []
    models = [path / name for name, _ in RUN_FOLDER_MODELS if (path / name / CONFIG_FILE).is_file()]
    if models:
        return models
    checkpoint = newest_run_checkpoint(path)
    return [checkpoint] if checkpoint is not None else []


def newest_run_checkpoint(folder: str | os.PathLike[str]) -> Path | None:
    """The checkpoint of the highest step among a training run's ``checkpoints/step-<N>/`` folders that holds a
    model (:data:`CONFIG_FILE` and :data:`WEIGHTS_FILE`); None when there is none."""
    root = Path(folder) / RUN_CHECKPOINTS_DIR
    if not root.is_dir():
        return None
    steps = [
        (int(match.group(1)), path)
        for path in root.iterdir()
        if (match := _CHECKPOINT_NAME.match(path.name))
        and (path / CONFIG_FILE).is_file()
        and (path / WEIGHTS_FILE).is_file()
    ]
    return max(steps)[1] if steps else None


def run_folder_hint(folder: str | os.PathLike[str], flag: str = "--model") -> str:
    """What to pass instead of a training run folder given where a model directory was expected.

    Args:
        folder: the folder given.
        flag: the command's flag for a model directory, named in the hint.

    Returns:
        ``"; RUN looks like a training run: pass --model RUN/best (its best evaluation) or RUN/model (its final
        model)"`` (those :func:`run_folder_models` finds) to append to a "config.json not found" message; for a run
        with neither (stopped before its first evaluation), a hint naming its newest checkpoint, a model directory
        too, and ``--resume``, which finishes the run; an empty string when ``folder`` is no training run.
    """
    what = dict(RUN_FOLDER_MODELS)
    models = run_folder_models(folder)
    if not models:
        return ""
    if models[0].parent.name == RUN_CHECKPOINTS_DIR:
        return (
            f"; {Path(folder)} looks like a training run that has not finished (no {RUN_BEST_MODEL_DIR}/ or "
            f"{RUN_FINAL_MODEL_DIR}/ yet): continue it with its training command and --resume, or pass {flag} "
            f"{models[0]} (its newest checkpoint, also a model directory)"
        )
    found = [f"{model} ({what[model.name]})" for model in models]
    return f"; {Path(folder)} looks like a training run: pass {flag} {' or '.join(found)}"


def replaces_model_file(output: Path, model_dir: Path) -> bool:
    """Whether writing the output file ``output`` would replace a file the model folder ``model_dir`` is read from:
    its :data:`CONFIG_FILE` or :data:`WEIGHTS_FILE`, or an export's :data:`EXPORT_MANIFEST_FILE` or ONNX graphs
    (other files there, such as a model card's scores, may be rewritten)."""
    if output.resolve().parent != model_dir.resolve():
        return False
    return output.name in (CONFIG_FILE, WEIGHTS_FILE, EXPORT_MANIFEST_FILE) or output.suffix.lower() == ".onnx"
