"""Local LoRA fine-tuning jobs: config, datasets, the out-of-process runner, adapter import."""

from arkor.contract.job_config import DatasetSource, TrainingConfig, parse_job_config
from arkor.training.dataset import DatasetSummary, validate_dataset
from arkor.training.errors import (
    AdapterIncompatible,
    DatasetError,
    DatasetProblem,
    JobConfigError,
    RunSpecError,
    TrainingCancelled,
    TrainingError,
)
from arkor.training.spec import RunSpec, exit_reason, runner_command, write_spec

__all__ = [
    "AdapterIncompatible",
    "DatasetError",
    "DatasetProblem",
    "DatasetSource",
    "DatasetSummary",
    "JobConfigError",
    "RunSpec",
    "RunSpecError",
    "TrainingCancelled",
    "TrainingConfig",
    "TrainingError",
    "exit_reason",
    "parse_job_config",
    "runner_command",
    "validate_dataset",
    "write_spec",
]
