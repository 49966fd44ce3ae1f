"""Values files read as helm reads them.

PyYAML follows YAML 1.1, where a float needs a dot: `1e-9` is a string. Helm's
YAML library (go-yaml, through sigs.k8s.io/yaml) reads it as a number, and so
does the chart's schema check in helm install; the simulator must agree, or it
refuses values that helm installs.
"""

from __future__ import annotations

import math
import re
from typing import IO, Any

import yaml

# go-yaml's float: digits with an optional fraction, or a fraction alone, each
# with an optional exponent. Integers are left to the resolver already there.
GO_YAML_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")


class HelmValuesLoader(yaml.SafeLoader):
    """SafeLoader that also reads an exponent without a dot (`1e-9`) as a float."""


def _go_yaml_float(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> float | str:
    value = loader.construct_yaml_float(node)
    if math.isinf(value) and GO_YAML_FLOAT.match(node.value):
        # Digits past float64's range (1e400): go-yaml cannot parse them and keeps the string.
        return node.value
    return value


HelmValuesLoader.add_implicit_resolver("tag:yaml.org,2002:float", GO_YAML_FLOAT, list("-+0123456789."))
HelmValuesLoader.add_constructor("tag:yaml.org,2002:float", _go_yaml_float)


def read_values(source: str | IO[str]) -> Any:
    """A values file's content as helm reads it."""
    return yaml.load(source, Loader=HelmValuesLoader)  # noqa: S506 - a SafeLoader
