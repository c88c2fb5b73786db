"""Fixtures for client tests: a real provider simulator and a real dspex runtime with a private cache."""

from __future__ import annotations

import pytest

import dspex
from dspex.testing import ProviderServer

KEY = "sk-test-0123456789abcdef"


@pytest.fixture
def server():
    with ProviderServer(answer=lambda req: f"ans:{req.last_user}", api_key=KEY) as srv:
        yield srv


@pytest.fixture
def drt(tmp_path):
    with dspex.runtime("local", cache_dir=tmp_path / "cache", log_level=None) as runtime:
        yield runtime


def make_lm(server, provider: str = "openai", **options):
    defaults = {"api_key": KEY, "base_url": server.base_url(provider), "rpm": None, "cache": False,
                "backoff_base": 0.01, "backoff_cap": 0.05}
    return dspex.LM(f"{provider}/test-model", **{**defaults, **options})
