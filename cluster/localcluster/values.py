"""Values laid over values, as helm merges a user's file over a chart's."""

from __future__ import annotations


def merged(base: dict, override: dict) -> dict:
    """`override` laid over `base`, nested dicts merged key by key (as helm merges values)."""
    result = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result
