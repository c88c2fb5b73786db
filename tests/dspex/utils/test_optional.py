"""Optional dependencies: a feature without its extra says which ``pip install 'dspex[...]'`` fixes it, at
once (an optimizer in its constructor, before any LM call), as one typed error."""

from __future__ import annotations

import pickle
import sys

import pytest

import dspex
from dspex.utils.optional import need


def test_a_missing_module_names_its_extra():
    with pytest.raises(dspex.OptionalDependencyMissing) as caught:
        need("no_such_module_for_dspex", "thing", "the thing feature")
    error = caught.value
    assert isinstance(error, ImportError) and isinstance(error, dspex.ConfigError)
    assert "the thing feature needs no_such_module_for_dspex: pip install 'dspex[thing]'" in str(error)
    again = pickle.loads(pickle.dumps(error))
    assert (again.module, again.extra, str(again)) == (error.module, error.extra, str(error))


def test_an_installed_module_is_returned():
    assert need("json", "none", "json") is sys.modules["json"]


@pytest.mark.parametrize("optimizer", ["MIPROv2", "BootstrapFewShotWithOptuna"])
def test_optimizers_that_search_with_optuna_say_so_in_their_constructor(optimizer, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # as if the optuna extra were not installed
    with pytest.raises(dspex.OptionalDependencyMissing, match=r"pip install 'dspex\[optuna\]'"):
        getattr(dspex, optimizer)(metric=lambda example, pred, trace=None: 1.0)
