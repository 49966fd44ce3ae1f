"""The HTTP protocol layer: routes, request shapes and error mapping. The model knows none of it."""
