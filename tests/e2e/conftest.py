"""Fixtures of the operator e2e tests: the API server is tests/e2e/kube.py's, through tests/conftest.py."""
