"""Registered base models, for pickers and target validation."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from arkor.cloud.auth import Caller, current_caller
from arkor.cloud.errors import error_responses
from arkor.sdk import _models as m

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
def list_base_models(
    request: Request, _caller: Annotated[Caller, Depends(current_caller)]
) -> BaseModelList:
    registry = request.app.state.settings.registry
    return BaseModelList(
        base_models=[m.BaseModelInfo(name=s.name, source=s.source) for s in registry.models]
    )
