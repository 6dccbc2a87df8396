"""Base model settings shared by every Release model: camelCase on the wire, strict keys."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class SpecModel(BaseModel):
    """A part of the Release spec: unknown keys are an error, and no value is coerced ("22" is no port,
    "yes" no boolean), as the API server's schema refuses them too. Enum fields take their string
    values (they are declared with `strict=False`)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_enum_values=True,
        strict=True,
    )


class StatusModel(BaseModel):
    """A part of the Release status: tolerant of keys written by newer operators."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        use_enum_values=True,
    )

    def wire(self) -> dict[str, object]:
        """Return the JSON-ready dict with camelCase keys (pure)."""
        return self.model_dump(mode="json", by_alias=True)
