"""Hostile-input tests. A package, so their module names (test_serve, ...) never collide with the same names under
tests/unit or tests/integration when pytest collects them together."""
