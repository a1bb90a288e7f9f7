"""The wire DTOs, re-exported for SDK users.

Their one definition is :mod:`arkor.contract.models`.
"""

from arkor.contract.deployments import AuthMode, RunRetentionMode
from arkor.contract.models import (
    AdapterSpec,
    AdapterTarget,
    AnonymousSession,
    BaseModelInfo,
    BaseModelTarget,
    CheckpointAdapter,
    CliAuthConfig,
    CreatedDeploymentKey,
    Deployment,
    DeploymentKey,
    DeploymentTarget,
    FinalAdapter,
    JobCheckpoint,
    JobStatus,
    Me,
    Org,
    Project,
    ProjectList,
    TrainingJob,
    UploadedDataset,
    User,
    WireModel,
    target_from_wire,
)

__all__ = [
    "AdapterSpec",
    "AdapterTarget",
    "AnonymousSession",
    "AuthMode",
    "BaseModelInfo",
    "BaseModelTarget",
    "CheckpointAdapter",
    "CliAuthConfig",
    "CreatedDeploymentKey",
    "Deployment",
    "DeploymentKey",
    "DeploymentTarget",
    "FinalAdapter",
    "JobCheckpoint",
    "JobStatus",
    "Me",
    "Org",
    "Project",
    "ProjectList",
    "RunRetentionMode",
    "TrainingJob",
    "UploadedDataset",
    "User",
    "WireModel",
    "target_from_wire",
]
