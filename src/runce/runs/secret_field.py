"""``runce.Secret``: the type of a job field that holds a secret reference (docs/runs.md#secrets).

At enqueue the field must be ``{"$secret": "NAME"}`` (kept as a :class:`SecretRef`); where
the job runs it is resolved (see :mod:`runce.runs.secrets`) and the job gets a
``pydantic.SecretStr``. A resolved value dumps masked, never as itself.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import PlainSerializer, PlainValidator, SecretStr, ValidationInfo, WithJsonSchema

from runce.runs.secrets import REFERENCE_KEY, SecretRef, is_reference, resolve


def _validate(value: Any, info: ValidationInfo) -> SecretRef | SecretStr:
    resolving = bool(info.context and info.context.get("resolve_secrets"))
    if isinstance(value, SecretStr) and resolving:
        return value
    if isinstance(value, SecretRef):
        ref = value
    elif is_reference(value):
        ref = SecretRef(value[REFERENCE_KEY])
    else:
        raise ValueError(
            'must be a secret reference {"$secret": "NAME"}; a secret itself is never '
            "stored in a run's input"
        )
    return resolve(ref.name) if resolving else ref


def _serialize(value: SecretRef | SecretStr) -> Any:
    if isinstance(value, SecretRef):
        return {REFERENCE_KEY: value.name}
    return str(value)  # a resolved secret dumps masked, never as its value


Secret = Annotated[
    SecretRef | SecretStr,
    PlainValidator(_validate),
    PlainSerializer(_serialize),
    WithJsonSchema(
        {
            "type": "object",
            "properties": {REFERENCE_KEY: {"type": "string"}},
            "required": [REFERENCE_KEY],
            "additionalProperties": False,
        }
    ),
]
"""A job field holding a secret reference ``{"$secret": "NAME"}``; the job gets the value
as a ``pydantic.SecretStr``."""
