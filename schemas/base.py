"""The common base of every scenario model: unknown keys are errors, values are frozen."""

from pydantic import BaseModel, ConfigDict

from runner import DISTRIBUTION

#: The JSON Schemas' ``$id`` prefix: their place in the installed package, under the distribution's name.
SCHEMA_ID_BASE = f"https://{DISTRIBUTION}.invalid/runner/schemas/"


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
