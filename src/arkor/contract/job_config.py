"""The contract's camelCase ``JobConfig`` parsed into a frozen :class:`TrainingConfig`.

Every field is declared once in :data:`FIELDS` (wire name, default, validator, help); parsing,
``to_wire()`` and the documentation test all read that table. Unknown fields are kept in
``TrainingConfig.extra`` and otherwise ignored, as the contract's loose server schema asks.

The default learning rate is 1e-3, about five times the usual LoRA default of 2e-4: with a
135M-parameter base and rank 8 on q/v only there are ~0.46M trainable weights, and at 2e-4 the
demo task needs several times more steps to learn its output format (measured on this CPU:
the format is reliable after ~20 steps at 1e-3).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict, get_type_hints

DEFAULT_TARGET_MODULES = ("q_proj", "v_proj")
LR_SCHEDULERS = ("linear", "constant", "cosine")
ADAMW_NAMES = ("adamw", "adamw_torch", "adamw_torch_fused", "adamw_hf", "adamw_8bit",
               "paged_adamw_8bit", "paged_adamw_32bit")
DATASET_FORMATS = ("chatml", "messages")
DRY_RUN_MAX_EXAMPLES = 16
DRY_RUN_MAX_STEPS = 2
MAX_SEQUENCE_LENGTH = 32768


class JobConfigError(ValueError):
    """A JobConfig field is missing or invalid; ``str()`` names the field first."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field} {message}")


@dataclass(frozen=True)
class DatasetSource:
    """Where the examples come from.

    - ``local``: ``path`` is a JSONL file or a ``save_to_disk`` dataset directory on the server.
    - ``upload``: ``upload_id`` names a file uploaded earlier; the server resolves it to a path.
    - ``huggingface``: ``name`` must be a ``datasets`` directory saved on disk (offline only:
      nothing is ever downloaded from the Hub); ``split`` picks a split of a DatasetDict and
      ``subset`` a sub-directory of ``name``.
    """

    type: str
    path: str | None = None
    upload_id: str | None = None
    name: str | None = None
    split: str | None = None
    subset: str | None = None

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"type": self.type}
        for key, value in (("path", self.path), ("uploadId", self.upload_id),
                           ("name", self.name), ("split", self.split), ("subset", self.subset)):
            if value is not None:
                wire[key] = value
        return wire


@dataclass(frozen=True)
class TrainingConfig:
    model: str
    dataset_source: DatasetSource
    eval_dataset_source: DatasetSource | None = None
    eval_fraction: float = 0.1
    lora_r: int = 8
    lora_alpha: float = 16
    lora_dropout: float = 0.0
    target_modules: tuple[str, ...] | str = DEFAULT_TARGET_MODULES
    max_length: int = 256
    max_steps: int | None = None
    num_train_epochs: float = 1.0
    learning_rate: float = 1e-3
    batch_size: int = 8
    warmup_steps: int = 0
    lr_scheduler_type: str = "linear"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    optim: str = "adamw_torch"
    logging_steps: int = 1
    save_steps: int = 20
    eval_steps: int | None = None
    dry_run: bool = False
    seed: int = 42
    train_on_responses_only: bool = True
    load_in_4bit: bool = False
    dataset_format: Any = None
    gpu_types: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {}
        for spec in FIELDS:
            value = getattr(self, spec.attr)
            if isinstance(value, DatasetSource):
                value = value.to_wire()
            elif isinstance(value, tuple):
                value = list(value)
            if value is not None:
                wire[spec.wire] = value
        wire.update(self.extra)
        return wire


@dataclass(frozen=True)
class StepPlan:
    total_steps: int
    steps_per_epoch: int


def plan_steps(config: TrainingConfig, num_examples: int) -> StepPlan:
    """The optimizer steps a job runs on ``num_examples`` training rows: ``maxSteps``, else
    ``numTrainEpochs`` epochs of ``batchSize`` rows; a dry run stops at two."""
    per_epoch = math.ceil(num_examples / config.batch_size)
    total = config.max_steps or math.ceil(config.num_train_epochs * per_epoch)
    if config.dry_run:
        total = min(total, DRY_RUN_MAX_STEPS)
    return StepPlan(total_steps=max(1, total), steps_per_epoch=per_epoch)


# --- validators: each takes (field name, raw value) and returns the parsed value ---------

Validator = Callable[[str, Any], Any]


def _is_number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def _as_int(name: str, value: Any, message: str) -> int:
    if not _is_number(value) or value != int(value):
        raise JobConfigError(name, message)
    return int(value)


def _int_at_least(minimum: int, message: str) -> Validator:
    def check(name: str, value: Any) -> int:
        number = _as_int(name, value, message)
        if number < minimum:
            raise JobConfigError(name, message)
        return number
    return check


def _optional(inner: Validator) -> Validator:
    def check(name: str, value: Any) -> Any:
        return None if value is None else inner(name, value)
    return check


def _positive_number(name: str, value: Any) -> float:
    if not _is_number(value) or value <= 0:
        raise JobConfigError(name, "must be a positive number")
    return float(value)


def _non_negative_number(name: str, value: Any) -> float:
    if not _is_number(value) or value < 0:
        raise JobConfigError(name, "must be a number >= 0")
    return float(value)


def _fraction(name: str, value: Any) -> float:
    if not _is_number(value) or not 0 <= value < 1:
        raise JobConfigError(name, "must be a number >= 0 and < 1")
    return float(value)


def _eval_fraction(name: str, value: Any) -> float:
    if not _is_number(value) or not 0 < value <= 0.5:
        raise JobConfigError(name, "must be a number > 0 and <= 0.5")
    return float(value)


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise JobConfigError(name, "must be true or false")
    return value


def _integer(name: str, value: Any) -> int:
    return _as_int(name, value, "must be an integer")


def _model(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise JobConfigError(name, "must be a non-empty model name")
    return value


def _max_length(name: str, value: Any) -> int:
    message = f"must be an integer between 16 and {MAX_SEQUENCE_LENGTH}"
    number = _as_int(name, value, message)
    if not 16 <= number <= MAX_SEQUENCE_LENGTH:
        raise JobConfigError(name, message)
    return number


def _scheduler(name: str, value: Any) -> str:
    if value not in LR_SCHEDULERS:
        raise JobConfigError(name, f"must be one of {', '.join(LR_SCHEDULERS)}")
    return str(value)


def _optim(name: str, value: Any) -> str:
    if value not in ADAMW_NAMES:
        raise JobConfigError(name, "must be an AdamW optimizer name such as adamw_torch "
                                   "(the local trainer always uses torch AdamW)")
    return str(value)


def _load_in_4bit(name: str, value: Any) -> bool:
    if _bool(name, value):
        raise JobConfigError(name, "is not supported by the local trainer; set it to false")
    return False


def _dataset_format(name: str, value: Any) -> Any:
    kind = value.get("type") if isinstance(value, Mapping) else value
    if kind not in DATASET_FORMATS:
        raise JobConfigError(name, 'must be {"type": "chatml"} (chat-format "messages" rows)')
    return dict(value) if isinstance(value, Mapping) else value


def _target_modules(name: str, value: Any) -> tuple[str, ...] | str:
    if value == "all-linear":
        return "all-linear"
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",")]
    if (not isinstance(value, list) or not value
            or not all(isinstance(v, str) and v.strip() for v in value)):
        raise JobConfigError(name, 'must be a non-empty list of module names such as '
                                   '["q_proj", "v_proj"], or "all-linear"')
    return tuple(value)


def _gpu_types(name: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise JobConfigError(name, 'must be a list of GPU type names such as ["A100", "H100"] '
                                   "(or [] for any device)")
    return tuple(v.strip() for v in value)


def _text(source_field: str, raw: Mapping[str, Any], key: str, *, required: bool) -> str | None:
    value = raw.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise JobConfigError(source_field, f"needs a non-empty string {key!r}")
    return value


def _dataset_source(name: str, value: Any) -> DatasetSource:
    if not isinstance(value, Mapping):
        raise JobConfigError(name, 'must be an object such as {"type": "local", "path": "..."}')
    kind = value.get("type")
    if kind == "local":
        return DatasetSource("local", path=_text(name, value, "path", required=True))
    if kind == "upload":
        return DatasetSource("upload", upload_id=_text(name, value, "uploadId", required=True))
    if kind == "huggingface":
        return DatasetSource("huggingface", name=_text(name, value, "name", required=True),
                             split=_text(name, value, "split", required=False),
                             subset=_text(name, value, "subset", required=False))
    if kind == "blob":
        raise JobConfigError(name, 'type "blob" (download from a URL) is not supported here; '
                                   'upload the file and use {"type": "upload", "uploadId": ...}')
    raise JobConfigError(name, 'type must be "local", "upload" or "huggingface"')


@dataclass(frozen=True)
class ConfigField:
    wire: str
    attr: str
    validate: Validator
    help: str
    required: bool = False


_STEPS = "must be a positive integer"
FIELDS: tuple[ConfigField, ...] = (
    ConfigField("model", "model", _model, "Registered base model name.", required=True),
    ConfigField("datasetSource", "dataset_source", _dataset_source,
                "Training data: local path, upload id, or a saved `datasets` directory.",
                required=True),
    ConfigField("evalDatasetSource", "eval_dataset_source", _optional(_dataset_source),
                "Separate eval data (same shapes as datasetSource)."),
    ConfigField("evalFraction", "eval_fraction", _eval_fraction,
                "Share of the training rows held out for eval when evalSteps is set and "
                "there is no evalDatasetSource."),
    ConfigField("loraR", "lora_r", _int_at_least(1, _STEPS), "LoRA rank."),
    ConfigField("loraAlpha", "lora_alpha", _positive_number, "LoRA scaling alpha."),
    ConfigField("loraDropout", "lora_dropout", _fraction, "Dropout on the LoRA input."),
    ConfigField("targetModules", "target_modules", _target_modules,
                'Module names to adapt, or "all-linear".'),
    ConfigField("maxLength", "max_length", _max_length,
                "Tokens per example; longer examples are truncated."),
    ConfigField("maxSteps", "max_steps", _optional(_int_at_least(1, _STEPS)),
                "Optimizer steps; overrides numTrainEpochs."),
    ConfigField("numTrainEpochs", "num_train_epochs", _positive_number,
                "Passes over the data when maxSteps is absent."),
    ConfigField("learningRate", "learning_rate", _positive_number, "Peak AdamW learning rate."),
    ConfigField("batchSize", "batch_size", _int_at_least(1, _STEPS), "Examples per step."),
    ConfigField("warmupSteps", "warmup_steps",
                _int_at_least(0, "must be an integer >= 0"), "Linear warmup steps."),
    ConfigField("lrSchedulerType", "lr_scheduler_type", _scheduler,
                "Decay after warmup: linear, constant or cosine."),
    ConfigField("weightDecay", "weight_decay", _non_negative_number, "AdamW weight decay."),
    ConfigField("maxGradNorm", "max_grad_norm", _positive_number, "Gradient clipping norm."),
    ConfigField("optim", "optim", _optim, "Accepted for compatibility; always torch AdamW."),
    ConfigField("loggingSteps", "logging_steps", _int_at_least(1, _STEPS),
                "Emit training.log every N steps."),
    ConfigField("saveSteps", "save_steps", _int_at_least(0, "must be an integer >= 0"),
                "Save a checkpoint every N steps; 0 saves only the final adapter."),
    ConfigField("evalSteps", "eval_steps", _optional(_int_at_least(1, _STEPS)),
                "Compute eval loss every N steps and at the end (null: no eval)."),
    ConfigField("dryRun", "dry_run", _bool,
                f"Use at most {DRY_RUN_MAX_EXAMPLES} examples and {DRY_RUN_MAX_STEPS} steps."),
    ConfigField("seed", "seed", _integer, "Seed for LoRA init, shuffling and eval hold-out."),
    ConfigField("trainOnResponsesOnly", "train_on_responses_only", _bool,
                "Loss on assistant tokens only (prompt tokens masked)."),
    ConfigField("loadIn4bit", "load_in_4bit", _load_in_4bit, "Must be false (no 4-bit here)."),
    ConfigField("datasetFormat", "dataset_format", _optional(_dataset_format),
                'Optional; {"type": "chatml"} is the only format.'),
    ConfigField("gpuTypes", "gpu_types", _gpu_types,
                'GPU types the job may train on, such as ["A100", "H100"]; a server without '
                "one of them refuses the job. [] trains on whatever the server has."),
)
_BY_WIRE = {spec.wire: spec for spec in FIELDS}
_BY_ATTR = {spec.attr: spec for spec in FIELDS}


class TrainerOptions(TypedDict, total=False):
    """Every optional JobConfig field as a snake_case keyword of the SDK's trainer factories
    (``model`` and ``datasetSource`` are their own arguments). Values are wire values; the
    server checks them. A test keeps these keys equal to :data:`FIELDS`."""

    eval_dataset_source: Mapping[str, Any]
    eval_fraction: float
    lora_r: int
    lora_alpha: float
    lora_dropout: float
    target_modules: list[str] | str
    max_length: int
    max_steps: int
    num_train_epochs: float
    learning_rate: float
    batch_size: int
    warmup_steps: int
    lr_scheduler_type: str
    weight_decay: float
    max_grad_norm: float
    optim: str
    logging_steps: int
    save_steps: int
    eval_steps: int
    dry_run: bool
    seed: int
    train_on_responses_only: bool
    load_in_4bit: bool
    dataset_format: Mapping[str, Any]
    gpu_types: list[str]


def wire_name(attr: str) -> str:
    """The camelCase JobConfig name of a snake_case field (``lora_r`` → ``loraR``)."""
    return _BY_ATTR[attr].wire


def field_help(wire: str) -> str:
    return _BY_WIRE[wire].help


def numeric_fields() -> tuple[str, ...]:
    """The wire names of the options that take a plain number (the Studio's settings form)."""
    hints = get_type_hints(TrainerOptions)
    return tuple(wire_name(name) for name, hint in hints.items() if hint in (int, float))


def field_default(wire_name: str) -> Any:
    spec = _BY_WIRE[wire_name]
    return TrainingConfig.__dataclass_fields__[spec.attr].default


def parse_job_config(raw: Mapping[str, Any]) -> TrainingConfig:
    """Validate a wire ``JobConfig``; raise :class:`JobConfigError` naming the first bad field.

    A field sent as ``null`` takes its default.
    """
    if not isinstance(raw, Mapping):
        raise JobConfigError("config", "must be a JSON object")
    values: dict[str, Any] = {}
    for spec in FIELDS:
        value = raw.get(spec.wire)
        if value is None:
            if spec.required:
                raise JobConfigError(spec.wire, "is required")
            continue
        values[spec.attr] = spec.validate(spec.wire, value)
    extra = {k: v for k, v in raw.items() if k not in _BY_WIRE}
    return TrainingConfig(**values, extra=extra)
