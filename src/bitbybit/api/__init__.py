"""The HTTP surface: routes, dependencies, the error envelope."""
