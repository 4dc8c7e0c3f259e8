"""Typed training configuration: what a named experiment under ``training/configs/`` returns."""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from plugins.frame_fit import FrameFitName

FRAME_FITS = ("crop", "stretch")
"""How real frames are fitted to the model's input size (:attr:`DataConfig.frame_fit`)."""

DEFAULT_SELECT_METRICS = ("video_fg_ari", "video_mbo")
"""The scores summed to choose a run's best model unless a configuration sets :attr:`TrainConfig.select_metrics`
otherwise (with single-object evaluation videos a run selects by ``video_mbo`` alone instead:
:func:`training.best.run_selection_metrics`)."""

GRAD_CLIP_SCOPES = ("global", "component")
"""How gradient norms are clipped (:attr:`OptimConfig.grad_clip_scope`, :func:`training.gradients.clip_gradients`)."""

MAX_LR = 1e37
"""The largest learning rate accepted: Adam's first step is ``lr / (1 - beta1)``, 10 x lr with torch's default
``beta1`` of 0.9 (what the run uses), and must stay within float32 (3.4e38); above about 3.4e37 the optimiser
overflows."""

RUN_ONLY_FIELDS = frozenset(
    {"data.num_workers", "data.workdir", "init_from", "checkpoint_every", "keep_checkpoints", "log_every"}
)
"""Fields a resumed run may change: they change how it executes or what it keeps, not what it computes
(``init_from`` only matters when a run starts; ``data.workdir`` only resolves relative folders, and the resolved
specs are compared; checkpoints and metric lines draw no random numbers and change no weights). ``eval_every`` is
not among them: which steps are evaluated decides which model ``best/`` keeps."""

MIN_TRANSITION_CLIP = 2
"""The fewest frames of a training clip that a model's transition learns from: it runs from a clip's second frame
on (:func:`training.run_state.check_transition_trains`)."""

LOCAL_DATA_SCHEMES = ("davis", "videos")
"""Data spec schemes whose argument is a folder on this machine (:func:`resolved_spec`)."""


@dataclass
class LossTerm:
    """One named, weighted loss from the registry.

    Attributes:
        name: registry name in the ``losses`` kind.
        weight: multiplier in the total loss (a finite number).
        kwargs: constructor arguments of the loss.

    Raises:
        ValueError: at construction, for a ``weight`` that is not a finite number (NaN or infinite would make every
            step's loss non-finite); the message names the loss.
    """

    name: str
    weight: float = 1.0
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _finite_number(self.weight):
            raise ValueError(f"loss {self.name!r}: weight must be a finite number, got {self.weight!r}")


@dataclass
class DataConfig:
    """Where clips come from and how they are batched.

    Attributes:
        spec: training data spec (``synthetic:<level>``, ``davis:<root>``, ``videos:<dir>``).
        val_spec: evaluation data spec; defaults to ``spec``.
        clip_length: frames per training clip (a random one of each video's non-overlapping chunks).
        batch_size: clips per optimisation step (per process under ``torchrun``).
        num_workers: DataLoader worker processes.
        val_videos: videos evaluated during training (the full validation set in ``training.evaluate``).
        val_frames: frames per evaluation video (None: whole videos).
        augment: training-clip augmentation: ``"none"`` or ``"crop_flip"`` (SmoothSA's random crop keeping 75-100 %
            of the area and horizontal flip; :mod:`training.datasets.augment`).
        frame_fit: how real frames of another aspect ratio than the model's input are fitted to it: ``"crop"``
            (the centre crop of that aspect ratio, resized: nothing stretched, the sides dropped) or
            ``"stretch"`` (the whole frame resized). The trained model records it (:attr:`recorded_frame_fit`) so
            the service fits frames the same way (its ``--frame-fit auto``).
        workdir: the working directory that relative folders of ``davis:`` and ``videos:`` specs are resolved
            from. At construction such a folder is made absolute (``~`` expanded), so the ``train_config.json`` a
            run writes records where its data is, and a resume from another directory finds it; ``workdir`` is
            recorded then (None: the current one, set when first needed). A resumed run keeps the one it was
            started in, so ``--data videos:rec`` typed again from elsewhere names the same folder. A configuration
            saved without it (relative folders as typed) resolves them from the current directory.

    Raises:
        ValueError: at construction, for a count below its minimum (``batch_size``, ``clip_length`` and
            ``val_frames`` 1, ``num_workers`` and ``val_videos`` 0) or an unknown ``frame_fit``.
    """

    spec: str = "synthetic:medium"
    val_spec: str | None = None
    clip_length: int = 6
    batch_size: int = 8
    num_workers: int = 0
    val_videos: int = 16
    val_frames: int | None = 24
    augment: str = "none"
    frame_fit: str = "crop"
    workdir: str | None = None

    def __post_init__(self) -> None:
        folders = [spec_folder(spec) for spec in (self.spec, self.val_spec) if spec is not None]
        if self.workdir is None and any(folder is not None and not folder.is_absolute() for folder in folders):
            self.workdir = os.getcwd()  # recorded: a resume resolves the same flags from here
        workdir = self.workdir or os.getcwd()  # unused unless a folder is relative, which sets it above
        self.spec = resolved_spec(self.spec, workdir)
        self.val_spec = None if self.val_spec is None else resolved_spec(self.val_spec, workdir)
        minimum = {"batch_size": 1, "clip_length": 1, "num_workers": 0, "val_videos": 0}
        wrong = [
            f"{name} must be >= {least}, got {value}"
            for name, least in minimum.items()
            if (value := getattr(self, name)) < least
        ]
        if self.val_frames is not None and self.val_frames < 1:
            wrong.append(f"val_frames must be >= 1 or None, got {self.val_frames}")
        if self.frame_fit not in FRAME_FITS:
            wrong.append(f"frame_fit must be one of {', '.join(FRAME_FITS)}, got {self.frame_fit!r}")
        if wrong:
            raise ValueError("data settings: " + "; ".join(wrong))

    @property
    def center_crop(self) -> bool:
        """Whether real frames are centre-cropped to the model's aspect ratio (``frame_fit == "crop"``)."""
        return self.frame_fit == "crop"

    @property
    def recorded_frame_fit(self) -> FrameFitName | None:
        """The fit a model trained on :attr:`spec` records (``VideoSlotModel.frame_fit``): :attr:`frame_fit` for
        real video, ``None`` for ``synthetic:<level>``, whose frames are generated at the model's input size, so
        no fit touched them."""
        return None if self.spec.partition(":")[0] == "synthetic" else cast(FrameFitName, self.frame_fit)


def spec_folder(spec: str) -> Path | None:
    """The folder a :data:`LOCAL_DATA_SCHEMES` spec names, ``~`` expanded (relative when given so); None for any
    other spec, or one that names no folder."""
    scheme, sep, folder = spec.partition(":")
    if not sep or scheme not in LOCAL_DATA_SCHEMES or not folder:
        return None
    try:
        return Path(folder).expanduser()
    except RuntimeError:  # ~user of no known user: a relative path like any other
        return Path(folder)


def resolved_spec(spec: str, workdir: str) -> str:
    """``spec`` with the folder of a :data:`LOCAL_DATA_SCHEMES` spec made absolute (:func:`spec_folder`), a
    relative one joined to ``workdir`` (``videos:rec`` -> ``videos:/home/me/rec``); any other spec, or one
    naming an absolute folder, as it is."""
    folder = spec_folder(spec)
    scheme, _, typed = spec.partition(":")
    if folder is None or Path(typed).is_absolute():
        return spec
    return f"{scheme}:{os.path.normpath(Path(workdir).absolute() / folder)}"  # rec/../x -> x; an expanded ~ stays


@dataclass
class OptimConfig:
    """Adam with linear warm-up then cosine decay: the SmoothSA / RandSF.Q schedule (Genera1Z/SmoothSA configs).

    Attributes:
        lr: peak learning rate.
        warmup_fraction: fraction of steps of linear warm-up from 0.
        final_lr_fraction: the cosine ends at ``lr * final_lr_fraction`` (1e-3 in SmoothSA).
        grad_clip: maximum gradient norm (None: no clipping).
        grad_clip_scope: ``"global"`` clips the norm of all gradients together (the papers); ``"component"``
            clips each model component's gradients (encoder, initializer, aggregator, transition, decoder)
            separately, so one large auxiliary loss confined to one component (the SmoothSA preheat loss when
            the preheater's features are detached) cannot shrink every other component's update.
        mixed_precision: fp16 autocast + gradient scaling on CUDA (ignored on the CPU).

    Raises:
        ValueError: at construction, for an ``lr`` not above 0 or above :data:`MAX_LR`, a ``grad_clip`` that is
            not None or a finite number above 0 (0 would stop every update, a negative one turn each into gradient
            ascent), a ``warmup_fraction`` or ``final_lr_fraction`` that is not a number in [0, 1] (a negative end
            turns the last steps into gradient ascent, one above 1 makes the rate grow past the peak, and 5 meant
            as 5 % would keep the rate below a fifth of it), or a ``grad_clip_scope`` other than those in
            :data:`GRAD_CLIP_SCOPES`.
    """

    lr: float = 4e-4
    warmup_fraction: float = 0.05
    final_lr_fraction: float = 1e-3
    grad_clip: float | None = 0.05
    grad_clip_scope: Literal["global", "component"] = "global"
    mixed_precision: bool = True

    def __post_init__(self) -> None:
        wrong = []
        if not (_finite_number(self.lr) and 0 < self.lr <= MAX_LR):
            largest = f"{MAX_LR:g} (Adam's first step, 10 x lr, must stay within float32)"
            wrong.append(f"lr must be a number above 0 and at most {largest}, got {self.lr!r}")
        if self.grad_clip is not None and not (_finite_number(self.grad_clip) and self.grad_clip > 0):
            wrong.append(f"grad_clip must be None (no clipping) or a finite number above 0, got {self.grad_clip!r}")
        for name in ("warmup_fraction", "final_lr_fraction"):
            value = getattr(self, name)
            if not (_finite_number(value) and 0 <= value <= 1):
                wrong.append(f"{name} must be a fraction in [0, 1], got {value!r}")
        if self.grad_clip_scope not in GRAD_CLIP_SCOPES:
            wrong.append(f"grad_clip_scope must be one of {', '.join(GRAD_CLIP_SCOPES)}, got {self.grad_clip_scope!r}")
        if wrong:
            raise ValueError("optimiser settings: " + "; ".join(wrong))


@dataclass
class TrainConfig:
    """A complete experiment.

    Attributes:
        name: the experiment's name (the config file's name).
        model: keyword arguments of :class:`plugins.VideoSlotModel`.
        losses: weighted loss terms.
        data: data settings.
        optim: optimiser settings.
        steps: optimisation steps.
        seed: seed for weights, data and noise.
        eval_every: steps between evaluations (0: only at the end).
        checkpoint_every: steps between checkpoints (the last step is always saved).
        log_every: steps between metric lines.
        keep_checkpoints: how many recent checkpoints to keep on disk.
        select_metrics: score fields summed to choose the run's best model (``best/``) among the evaluations;
            left at :data:`DEFAULT_SELECT_METRICS`, a run whose evaluation videos have one object each selects by
            ``video_mbo`` alone (:func:`training.best.run_selection_metrics`).
        init_from: a saved model directory to warm-start from (every tensor of the same name and shape is
            copied; see :mod:`training.warm_start`); ignored when resuming from a checkpoint.
        train_only: the model components that train (names from :data:`plugins.model.COMPONENT_NAMES`, such as
            ``["decoder"]`` to fit a new decoder to a warm-started model's slots); the others are frozen. None
            trains every component.

    Raises:
        ValueError: at construction, for ``steps``, ``checkpoint_every``, ``log_every`` or ``keep_checkpoints``
            below 1, or a negative ``eval_every``.
    """

    name: str
    model: dict[str, Any]
    losses: list[LossTerm]
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    steps: int = 5000
    seed: int = 0
    eval_every: int = 500
    checkpoint_every: int = 250
    log_every: int = 10
    keep_checkpoints: int = 2
    select_metrics: list[str] = field(default_factory=lambda: list(DEFAULT_SELECT_METRICS))
    init_from: str | None = None
    train_only: list[str] | None = None

    def __post_init__(self) -> None:
        counts = {"steps": self.steps, "checkpoint_every": self.checkpoint_every, "log_every": self.log_every}
        counts["keep_checkpoints"] = self.keep_checkpoints
        too_small = [f"{name}={value}" for name, value in counts.items() if value < 1]
        if self.eval_every < 0:
            too_small.append(f"eval_every={self.eval_every}")
        if too_small:
            raise ValueError(f"config {self.name!r}: {', '.join(too_small)} (need eval_every >= 0, the others >= 1)")

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of the model's input: the model section's ``image_size``, else the model's default (64x64)."""
        size = self.model.get("image_size", (64, 64))
        return int(size[0]), int(size[1])

    def to_json(self) -> dict[str, Any]:
        """The whole configuration as JSON-serialisable data."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_json`."""
        return cls(
            **{
                **data,
                "losses": [LossTerm(**term) for term in data["losses"]],
                "data": DataConfig(**data["data"]),
                "optim": OptimConfig(**data["optim"]),
            }
        )


def _finite_number(value: object) -> bool:
    """Whether ``value`` is a real number (not a bool) that is finite."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def read_train_config(path: Path) -> TrainConfig:
    """The configuration a run saved (its ``train_config.json``).

    Raises:
        ValueError: the file is not valid JSON, not a configuration of this version, or holds a setting this version
            refuses (the message names it).
        OSError: it cannot be read.
    """
    try:
        return TrainConfig.from_json(json.loads(path.read_text()))
    except (ValueError, TypeError, KeyError, AttributeError) as error:  # damaged, another version's, or invalid
        raise ValueError(f"{path} cannot be read as a training configuration ({type(error).__name__}: {error})") from (
            error
        )


def changed_fields(before: TrainConfig, after: TrainConfig) -> list[str]:
    """The fields ``after`` changes, except :data:`RUN_ONLY_FIELDS`.

    Args:
        before: the configuration a run was started with.
        after: the configuration asked for now.

    Returns:
        ``"path: old -> new"`` per changed field, with dotted paths into nested dicts and JSON values (``<absent>``
        for a key only one side has), sorted by path; empty when ``after`` computes what ``before`` does.
    """
    differences = json_differences(before.to_json(), after.to_json(), ignored=RUN_ONLY_FIELDS)
    return [f"{key}: {old} -> {new}" for key, old, new in differences]


def json_differences(
    before: Any, after: Any, prefix: str = "", ignored: frozenset[str] = frozenset()
) -> list[tuple[str, str, str]]:
    """The leaves of two JSON-like values (nested dicts, compared as JSON, so tuples equal lists) that differ:
    ``(dotted path, old, new)`` with the values as JSON (``<absent>`` for a key only one side has), sorted by
    path, the paths under ``prefix`` and without those in ``ignored``."""
    old, new = (_flatten(json.loads(json.dumps(value)), prefix) for value in (before, after))
    return [
        (key, _shown(old, key), _shown(new, key))
        for key in sorted((old.keys() | new.keys()) - ignored)
        if key not in old or key not in new or old[key] != new[key]
    ]


def _shown(values: dict[str, Any], key: str) -> str:
    return json.dumps(values[key]) if key in values else "<absent>"


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one dict with dotted keys: ``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists and empty dicts
    stay values."""
    if not isinstance(value, dict) or not value:
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, item in value.items():
        flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return flat
