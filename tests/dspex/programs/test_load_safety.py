"""dspex.load reads data, never code: crafted files are ConfigErrors, every signature that loads saves back."""

from __future__ import annotations

import enum
import json
import sys
from typing import Literal, Optional

import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dspex


class Verdict(pydantic.BaseModel):
    label: Literal["positive", "negative"]
    confidence: float


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


def saved(tmp_path, program) -> dict:
    path = tmp_path / "p.json"
    program.save(path)
    return json.loads(path.read_text())


def write(tmp_path, doc) -> str:
    path = tmp_path / "crafted.json"
    path.write_text(json.dumps(doc))
    return str(path)


def test_a_field_annotation_in_the_file_is_never_evaluated(tmp_path):
    marker = tmp_path / "pwned"
    doc = saved(tmp_path, dspex.Predict("question -> answer"))
    code = f"__import__('pathlib').Path({str(marker)!r}).write_text('x') or str"
    field = doc["dspex_config"]["signature"]["fields"]["question"]  # the constructor config holds the signature
    field["annotation"], field["kind"] = code, "output"
    with pytest.raises(dspex.ConfigError, match="only 'desc' and 'prefix'"):
        dspex.load(write(tmp_path, doc))
    assert not marker.exists()
    del field["annotation"], field["kind"]
    state = doc.get("state", doc)  # a lone Predict's state: at the top (DSPy's shape) or under "state"
    state_field = state["signature"]["fields"][0]  # DSPy's state: prefix and description only
    state_field["annotation"], state_field["kind"] = code, "output"
    loaded = dspex.load(write(tmp_path, doc))
    assert not marker.exists() and loaded.signature.fields["question"].annotation is str


def test_the_class_entry_never_imports_a_module(tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "evil_module.py").write_text(f"open({str(marker)!r}, 'w').write('side effect')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    doc = saved(tmp_path, dspex.Predict("question -> answer"))
    doc["class"] = "evil_module:Anything"
    with pytest.raises(dspex.ConfigError, match="not imported"):
        dspex.load(write(tmp_path, doc))
    assert not marker.exists() and "evil_module" not in sys.modules
    doc["class"] = "json:JSONDecoder"  # imported, but not a Module
    with pytest.raises(dspex.ConfigError, match="not a dspex Module"):
        dspex.load(write(tmp_path, doc))


def test_a_custom_type_is_looked_up_only_in_imported_modules(tmp_path):
    doc = saved(tmp_path, dspex.Predict(dspex.Signature("review -> verdict: Verdict", custom_types={"Verdict": Verdict})))
    assert doc["dspex_config"]["signature"]["types"] == {"Verdict": f"{__name__}:Verdict"}
    doc["dspex_config"]["signature"]["types"]["Verdict"] = "os:system"
    with pytest.raises(dspex.ConfigError, match="not a pydantic model or an enum"):
        dspex.load(write(tmp_path, doc))


@pytest.mark.parametrize("spec", [
    "question: str | None -> answer: Optional[str]",
    "q -> none_out: None",
    "q -> nones: list[None]",
    "q -> label: Literal['positive', 'negative']",
    "q -> one: Literal['only']",
    "q -> verdict: Verdict",
    "q -> verdicts: list[Verdict], colour: Colour",
    "q -> pair: tuple[int, ...], mixed: Union[int, str]",
])
def test_every_signature_that_loads_saves_back(tmp_path, spec):
    sig = dspex.Signature(spec, custom_types={"Verdict": Verdict, "Colour": Colour, "Optional": Optional})
    program = dspex.Predict(sig)
    path = tmp_path / "p.json"
    program.save(path)
    back = dspex.load(path)
    assert back.signature == sig
    assert {n: f.annotation for n, f in back.signature.fields.items()} == \
        {n: f.annotation for n, f in sig.fields.items()}


@pytest.mark.parametrize("bad", ["list[" * 199 + "str" + "]" * 199, "Literal[()]", "tuple[()]", "list[]",
                                 "str[int]", "Literal[print]"])
def test_hostile_types_are_signature_errors(bad):
    with pytest.raises(dspex.SignatureError):
        dspex.Signature(f"q -> a: {bad}")


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                         max_size=4), max_leaves=30)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutation=st.lists(st.tuples(st.sampled_from(["class", "config", "state", "dspex_format", "self", "signature",
                                                    "string", "fields", "types", "demos", "adapter", "instructions"]),
                                   json_values), max_size=4))
def test_any_saved_document_loads_or_is_a_config_error(tmp_path, mutation):
    doc = saved(tmp_path, dspex.ChainOfThought("question -> answer"))
    for key, value in mutation:  # overwrite that key wherever it appears: top level, state, signatures
        targets = [doc, doc.get("state"), doc.get("config")]
        targets += [t.get("signature") for t in targets[1:] if isinstance(t, dict)]
        for target in targets:
            if isinstance(target, dict) and key in target:
                target[key] = value
    try:
        program = dspex.load(write(tmp_path, doc))
    except dspex.ConfigError:
        return
    assert isinstance(program, dspex.Module)
