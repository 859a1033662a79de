"""Fixtures of the trainer's tests: every test trains on one torch thread (``one_torch_thread``)."""

from __future__ import annotations

from tests.support import one_torch_thread  # noqa: F401  (an autouse fixture)
