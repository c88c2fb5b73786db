"""dspex.History."""

from __future__ import annotations

import pydantic
import pytest

from dspex.adapters.types import History, ToolCalls
from dspex.primitives import Prediction


def test_messages_round_trip_through_json():
    history = History(messages=[{"question": "2+2?", "answer": "4"}, {"question": "and 3+3?", "answer": "6"}])
    assert History.model_validate_json(history.model_dump_json()) == history
    assert history.model_dump() == {"messages": [{"question": "2+2?", "answer": "4"},
                                                 {"question": "and 3+3?", "answer": "6"}]}


def test_a_prediction_spreads_into_a_message():
    history = History(messages=[{"question": "q", **Prediction(answer="a")}])
    assert history.messages == [{"question": "q", "answer": "a"}]


def test_custom_type_values_dump_through_their_serializer():
    calls = ToolCalls.from_dict_list([{"name": "search", "args": {"q": "x"}}])
    dumped = History(messages=[{"tool_calls": calls}]).model_dump(mode="json")
    assert dumped == {"messages": [{"tool_calls": {"tool_calls": [{"name": "search", "args": {"q": "x"}}]}}]}
    assert History.model_validate(dumped).model_dump(mode="json") == dumped


def test_frozen_and_strict():
    history = History(messages=[])
    with pytest.raises(pydantic.ValidationError):
        history.messages = [{"a": 1}]
    with pytest.raises(pydantic.ValidationError):
        History(messages=[], extra=1)
    with pytest.raises(pydantic.ValidationError):
        History(messages="not a list")
