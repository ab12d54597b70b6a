"""Helpers shared by the construct and integration tests (not fixtures: plain functions)."""
