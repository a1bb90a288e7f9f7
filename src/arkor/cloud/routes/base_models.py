"""Registered base models, for pickers and target validation."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from arkor.cloud.auth import CallerDep
from arkor.cloud.deps import SettingsDep
from arkor.cloud.errors import error_responses
from arkor.contract import models as m

router = APIRouter(tags=["base models"])


class BaseModelList(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)
    base_models: list[m.BaseModelInfo]


@router.get(
    "/v1/base-models",
    response_model=BaseModelList,
    responses=error_responses(401, 426),
    summary="Base models this server can serve and fine-tune",
)
def list_base_models(_caller: CallerDep, settings: SettingsDep) -> BaseModelList:
    registry = settings.registry
    return BaseModelList(
        base_models=[m.BaseModelInfo(name=s.name, source=s.source, public=s.name in registry.menu)
                     for s in registry.models]
    )
