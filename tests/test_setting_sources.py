"""Each server setting has one home, the `Settings` model. Everything else
that names a setting (the chart's values and schema, the Deployment's env,
the chart's cross-field checks, the settings page) is checked against it
here, so a setting added, bounded or renamed in one place only fails a test."""

from __future__ import annotations

import json
import subprocess
import sys
from enum import Enum

import annotated_types
import jsonschema
import pytest
from pydantic import ValidationError
from test_chart import CHART, chart_values, env_of, helm_template, render, server_container

from inferscale.settings import MAX_ROWS_BYTES, Settings

SCHEMA = json.loads((CHART / "values.schema.json").read_text())


def camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(word.capitalize() for word in rest)


def schema_of(key: str) -> dict:
    """The schema of `server.<key>`, with the file's shared definitions in reach of its $refs."""
    return {**SCHEMA["properties"]["server"]["properties"][key], "definitions": SCHEMA.get("definitions", {})}


def probes(name: str) -> list:
    """The field's default, and values on each side of each of its bounds."""
    field = Settings.model_fields[name]
    default = getattr(field.default, "value", field.default)
    values = [default]
    step = 1 if field.annotation is int else 0.5
    for bound in field.metadata:
        if isinstance(bound, annotated_types.Ge):
            values += [bound.ge, bound.ge - step]
        elif isinstance(bound, annotated_types.Gt):
            values += [bound.gt, bound.gt + step]
        elif isinstance(bound, annotated_types.Le):
            values += [bound.le, bound.le + step]
    if isinstance(default, bool):
        values += [not default]
    if isinstance(field.default, Enum):
        values += [member.value for member in type(field.default)] + ["gpu"]
    if isinstance(default, str):
        values += ["", "a", "-a", "a b", "/tmp/x", "tmp/x", "DEBUG", "debug", "a" * 63, "a" * 64]
    if isinstance(default, int) and not isinstance(default, bool):
        values += [1.5]
    if field.annotation is float:
        values += [0.5, 0.99, 1]  # around 1, where a rule of the field's own may bound it
    return values


# Fields probed beside other values than the defaults, so that no cross-field
# rule (tested on its own below) decides: INFERENCE_TIMEOUT_SECONDS's bound of 1
# is under the default inference's 10 s, and a day's inference is over its 60 s.
PROBED_BESIDE = {
    "inference_timeout_seconds": {"inference_duration_seconds": 0},
    "inference_duration_seconds": {"inference_timeout_seconds": 0},
}


def settings_accept(name: str, value) -> bool:
    try:
        Settings(**PROBED_BESIDE.get(name, {}), **{name: value})
    except ValidationError:
        return False
    return True


def schema_accepts(name: str, value) -> bool:
    try:
        jsonschema.validate(value, schema_of(camel(name)))
    except jsonschema.ValidationError:
        return False
    return True


def test_every_setting_is_a_chart_value_with_a_schema_entry_and_nothing_else_is():
    settings = {camel(name) for name in Settings.model_fields}
    assert set(chart_values()["server"]) == settings
    assert set(SCHEMA["properties"]["server"]["properties"]) == settings
    assert SCHEMA["properties"]["server"]["additionalProperties"] is False


def test_every_setting_reaches_the_container_under_its_own_variable():
    env = env_of(server_container(render()))
    for name in Settings.model_fields:
        assert name.upper() in env, f"{name.upper()} is not in the Deployment's env"


@pytest.mark.parametrize("name", list(Settings.model_fields))
def test_the_schema_accepts_exactly_what_the_server_accepts(name):
    """A value the schema lets through and the server refuses is a pod that
    crash-loops after a clean `helm install`; one the schema refuses and the
    server takes is a setting users cannot reach."""
    disagreements = [
        (value, schema_accepts(name, value))
        for value in probes(name)
        if schema_accepts(name, value) != settings_accept(name, value)
    ]
    assert not disagreements, f"{name}: (value, schema accepts) where the server disagrees: {disagreements}"


# The server's cross-field rules (Settings._check_consistency), each with values
# that break it, its nearest values that keep it, and the value the chart's
# refusal must name.
CROSS_FIELD_RULES = {
    "jitter within the duration": (
        {"inference_jitter_seconds": 1.5, "inference_duration_seconds": 1},
        {"inference_jitter_seconds": 1, "inference_duration_seconds": 1},
        "server.inferenceJitterSeconds",
    ),
    "timeout over the longest inference": (
        {"inference_timeout_seconds": 10, "inference_duration_seconds": 9, "inference_jitter_seconds": 1},
        {"inference_timeout_seconds": 10.5, "inference_duration_seconds": 9, "inference_jitter_seconds": 1},
        "server.inferenceTimeoutSeconds",
    ),
    "admin port apart": ({"admin_port": 8080, "port": 8080}, {"admin_port": 8081, "port": 8080}, "server.adminPort"),
    # At the byte: the chart writes the server's limit as a literal.
    "rows the model process can read": (
        {"max_batch_size": MAX_ROWS_BYTES // (128 * 8) + 1, "max_features": 128},
        {"max_batch_size": MAX_ROWS_BYTES // (128 * 8), "max_features": 128},
        "server.maxBatchSize x server.maxFeatures",
    ),
}


def as_chart_values(settings: dict) -> dict:
    return {"server": {camel(name): value for name, value in settings.items()}}


@pytest.mark.parametrize("rule", CROSS_FIELD_RULES)
def test_the_chart_refuses_what_the_servers_cross_field_rules_refuse(rule):
    broken, kept, named = CROSS_FIELD_RULES[rule]
    with pytest.raises(ValidationError):
        Settings(**broken)
    Settings(**kept)
    refused = helm_template(as_chart_values(broken))
    assert refused.returncode != 0 and named in refused.stderr, refused.stderr[-500:]
    accepted = helm_template(as_chart_values(kept))
    assert accepted.returncode == 0, accepted.stderr[-500:]


def test_the_settings_page_is_what_the_settings_command_prints():
    page = (CHART.parent / "docs" / "settings.md").read_text()
    table = page.split("<!-- settings:start -->\n", 1)[1].split("<!-- settings:end -->", 1)[0]
    printed = subprocess.run(
        [sys.executable, "-m", "inferscale.cli", "settings"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    assert table == printed, "docs/settings.md: replace the table between its markers with `inferscale settings`"


def test_every_setting_is_described():
    assert [name for name, field in Settings.model_fields.items() if not field.description] == []
