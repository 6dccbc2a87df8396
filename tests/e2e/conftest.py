"""Fixtures of the operator e2e tests: the API server (tests/e2e/kube.py)."""

from __future__ import annotations

from .kube import kube

__all__ = ["kube"]
