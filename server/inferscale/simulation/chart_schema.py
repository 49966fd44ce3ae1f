"""The chart's values.schema.json, applied as helm applies it before it renders anything.

helm checks the values it will install (the chart's with the user's
coalesced over them, nulls already deleted) against the schema beside the
chart's values.yaml and refuses the release on any problem. The simulator
checks the same values against the same schema, so it never sizes a release
that `helm install` would refuse; a chart without a schema is not checked,
as helm does not check one.
"""

from __future__ import annotations

import json
from pathlib import Path

from jsonschema import Draft7Validator
from jsonschema.exceptions import SchemaError
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for

SCHEMA_FILE = "values.schema.json"


class UnreadableSchema(Exception):
    """The schema beside the values file is there but is not a JSON schema."""


def schema_beside(values_path: str) -> Validator | None:
    """The validator of the schema next to a chart's values.yaml, or None if it has none."""
    path = Path(values_path).with_name(SCHEMA_FILE)
    if not path.is_file():
        return None
    try:
        schema = json.loads(path.read_text())
        # The chart names its draft ($schema); one that names none is read as draft-07.
        validator = validator_for(schema, default=Draft7Validator)
        validator.check_schema(schema)
    except (OSError, ValueError, SchemaError) as error:
        raise UnreadableSchema(f"cannot read the chart's schema {path}: {error}") from error
    return validator(schema)


def schema_problems(values: dict, schema: Validator) -> list[str]:
    """What the schema refuses in `values`, each by its path (`autoscaling.maxReplicas: ...`), sorted by path."""
    errors = sorted(schema.iter_errors(values), key=lambda error: [str(part) for part in error.absolute_path])
    return [f"{_path(error.absolute_path)}: {error.message}" for error in errors]


def _path(parts) -> str:
    return ".".join(str(part) for part in parts) or "the values"
