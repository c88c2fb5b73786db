"""DummyLM writes answers as each adapter wants a model to write them."""

from __future__ import annotations

import dspex
from dspex.utils.dummies import DummyLM


def test_a_structured_output_is_written_as_json_and_parses_back_in_every_adapter():
    from dspex.adapters import ChatAdapter, JSONAdapter, XMLAdapter

    with dspex.runtime("local", log_level=None):
        for adapter in (ChatAdapter(), JSONAdapter(), XMLAdapter()):
            lm = DummyLM([{"boxes": [(1, 2, 3, 4), (5, 6, 7, 8)]}], adapter=adapter)
            with dspex.context(adapter=adapter):
                got = dspex.Predict("image_url: str -> boxes: list[tuple[int, int, int, int]]")(image_url="u", lm=lm)
            assert got.boxes == [(1, 2, 3, 4), (5, 6, 7, 8)]
