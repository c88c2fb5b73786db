"""Tools as DSPy users write them: dspex.Tool(func), typed (pydantic) arguments, async tools."""

from __future__ import annotations

import asyncio

import pydantic
import pytest

import dspex as dspy


class Query(pydantic.BaseModel):
    text: str
    limit: int = 3


def search(query: Query) -> str:
    """Search the corpus."""
    return f"{query.limit} results for {query.text}"


async def slow_double(x: int) -> int:
    """Double a number, slowly."""
    await asyncio.sleep(0.01)
    return 2 * x


def test_tool_from_a_function_and_typed_arguments():
    tool = dspy.Tool(search)
    assert (tool.name, tool.desc) == ("search", "Search the corpus.")
    assert "text" in str(tool.args["query"])
    assert tool(query={"text": "otp", "limit": 2}) == "2 results for otp"  # validated into the model
    with pytest.raises(dspy.ConfigError, match="query"):
        tool(query={"limit": "many"})


def test_async_tools_are_awaited():
    assert dspy.Tool(slow_double)(x="4") == 8
