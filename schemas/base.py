"""The common base of every scenario model: unknown keys are errors, values are frozen."""

from pydantic import BaseModel, ConfigDict


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
