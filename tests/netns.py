"""The multihost tests' hosts: :class:`dspex.testing.netns.Network`, skipped where namespaces cannot be made."""

from __future__ import annotations

import pytest

from dspex.testing.netns import Network as _Network
from dspex.testing.netns import NetworkUnavailable


def Network(n_hosts: int) -> _Network:  # noqa: N802 - stands in for the class
    try:
        return _Network(n_hosts)
    except NetworkUnavailable as exc:
        pytest.skip(str(exc))
