"""A simulated task where the instruction matters, for MIPROv2 and GEPA, deterministically (importable
without dspex or dspy: the DSPy side of the benchmarks loads this file by path).

Questions are ``<prefix><i>``, lower case for an even i and upper case for an odd one; the right answer is
the question in upper case. The simulated model answers the question as written unless its instruction
names the rule ("upper case"), whatever demos it is shown: zero-shot scores 0.5, any instruction naming the
rule 1.0. The rule is discoverable, as a proposer would discover it:

* a data-summary request (output field ``observations`` or ``summary``) that shows a lower-case question
  beside its upper-case answer is answered with an observation naming the rule;
* an instruction-proposal request (output ``proposed_instruction``) proposes an instruction naming the rule
  when its prompt names it (from the summary), unless its tip asks for a persona or for creativity, which
  sends the proposal astray (so the search has to choose);
* a reflection request (GEPA: "new instruction" answered in a ``` block, or an output field named like
  ``new_instruction``) names the rule when the feedback in it does; the metric's feedback on a wrong
  answer does.
"""

from __future__ import annotations

import json
import re

RULE = "upper case"
WITH_RULE = "Answer with the question written in upper case."
WITHOUT_RULE = "Answer the question."
FEEDBACK_WRONG = "Wrong: the answer must be the question written in upper case."
FEEDBACK_RIGHT = "Correct."
_MARKER = re.compile(r"\[\[ ## (\w+) ## \]\]\n(.*?)(?=\n\n|\n\[\[ ## |\Z)", re.S)  # a field: its first paragraph
_OUTPUTS = re.compile(r"Your output fields are:\n(.*?)\n(?:All interactions|\S[^\n]*structured)", re.S)


def output_fields(system: str) -> list[str]:
    """The output field names a Chat-adapter system message asks for."""
    block = _OUTPUTS.search(system)
    return re.findall(r"^\d+\. `(\w+)`", block.group(1), re.M) if block else []


def shows_rule(text: str) -> bool:
    """True when ``text`` shows a lower-case question next to its upper-case answer."""
    return any(f"{letters.upper()}{digits}" in text for letters, digits in re.findall(r"\b([a-z]+)(\d+)\b", text))


def _chat(values: dict[str, str]) -> str:
    return "".join(f"[[ ## {k} ## ]]\n{v}\n\n" for k, v in values.items()) + "[[ ## completed ## ]]"


def answer_text(system: str, messages: list[dict]) -> str:
    """The simulated model's answer to one chat request (``messages`` without the system message)."""
    users = [m["content"] for m in messages if m["role"] == "user"]
    last = users[-1] if users else ""
    if "new instruction" in last and "```" in last:  # a GEPA reflection
        return "```\n" + (WITH_RULE if RULE in last.lower() else WITHOUT_RULE) + "\n```"
    fields = {k: v.strip() for k, v in _MARKER.findall(last)}
    values: dict[str, str] = {}
    for name in output_fields(system) or ["answer"]:
        if name == "answer":
            question = fields.get("question", "")
            values[name] = question.upper() if RULE in system.lower() else question
        elif name in ("observations", "summary"):
            values[name] = ("The answers are the questions written in upper case." if shows_rule(last) or RULE in last
                            else "The examples are short questions with short answers.")
        elif name == "proposed_instruction":
            tip = fields.get("tip", "").lower()
            astray = "persona" in tip or "creativ" in tip
            values[name] = WITH_RULE if RULE in last.lower() and not astray else WITHOUT_RULE
        elif "instruction" in name:  # a reflection written as a signature (DSPy's GEPA: new_instruction)
            values[name] = WITH_RULE if RULE in last.lower() else WITHOUT_RULE
        elif name == "reasoning":
            values[name] = "The question is given; answer it."
        else:
            values[name] = "A program that answers short questions."
    if "Respond with a JSON object" in last:  # a JSON adapter's request
        return json.dumps(values)
    return _chat(values)


def rows(n: int, prefix: str = "q", start: int = 0) -> list[dict]:
    """``n`` examples: question ``<prefix><i>`` (lower case for even i, upper case for odd), answer in upper case."""
    out = []
    for i in range(start, start + n):
        question = f"{prefix}{i}" if i % 2 == 0 else f"{prefix}{i}".upper()
        out.append({"question": question, "answer": f"{prefix}{i}".upper()})
    return out


def score_and_feedback(expected: str, got: str) -> tuple[float, str]:
    right = got.strip() == expected
    return (1.0 if right else 0.0), (FEEDBACK_RIGHT if right else FEEDBACK_WRONG)
