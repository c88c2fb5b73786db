"""A simulated two-predictor task where each predictor's instruction matters, for COPRO, SIMBA, MIPROv2 and GEPA
side by side with DSPy (benchmarks/bench_two_rules.py). Importable without dspex or dspy: the DSPy side of the
benchmark loads this file by path for the data and the metric; the simulated model runs in the benchmark's
own process, behind the provider simulator.

The program is ``draft = Predict("question -> draft")`` then ``final = Predict("question, draft -> answer")``.
Question ``i`` (``<prefix><i>``) is upper case for an odd i and ends with "!" when ``(i // 2)`` is odd; the
right draft is the question in upper case (rule A, "upper case"), the right answer is the right draft ending
with an exclamation mark (rule B, "exclamation mark"). The simulated model:

* as the draft predictor (output ``draft``) writes the question in upper case when its instruction (the
  system message) names rule A, else the question as written;
* as the final predictor (output ``answer``) writes the draft it is given with a "!" appended (when it lacks
  one) when its instruction names rule B, else the draft as given;

so zero-shot scores 0.25 (right only on the questions that are already upper case and end with "!"), either
rule alone 0.5, both 1.0. A predictor ignores the other predictor's rule and any demos.

Sampling: a request at temperature >= 0.5 is a sample. The server counts the samples of each identical request
(``n`` choices of one request count as n samples), so sample k of a request is the same whether a library
sends one request with ``n`` or n requests: a predictor's sample k "happens" to apply its rule with
probability ``LUCK`` (a hash of the predictor, its inputs and k). Below 0.5 (or unset) the model is
deterministic. This is what gives SIMBA's samples their variance.

What each optimizer shows the prompt model, and when the answer names a rule (a rule "named" is its name in
the text; a rule "shown" is named, or visible in data: a lower-case question beside its upper-case form for
A, a token beside the same token ending with "!" for B):

* data summary (MIPROv2: output ``observations`` / ``summary``): names the rules its examples show;
* grounded proposal (MIPROv2: output ``proposed_instruction`` with a ``tip``): an instruction naming every
  rule its prompt shows, unless the tip asks for a persona or for creativity (astray: no rule);
* COPRO (output ``proposed_prefix_for_output_field``): its prompts show no data, so the prompt model explores:
  sample k of a request adds idea ``k % len(IDEAS)`` (three generic, one naming rule A, one rule B); shown
  attempts with scores, it keeps the rules named by the best-scoring attempt when that scored above the
  lowest, and adds idea k;
* rule introspection (SIMBA: output ``module_advice``): advice for every module naming every rule the prompt
  shows (the example's reference fields, the two runs and the metric's feedback);
* reflection (GEPA: a prompt asking for a "new instruction" in a ``` block, or an output field named like
  ``new_instruction``): an instruction naming every rule named in the prompt (the current instruction and
  the metric's feedback: it names what was wrong).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading

RULE_A, RULE_B = "upper case", "exclamation mark"
SENTENCE = {RULE_A: "Write the question in upper case.", RULE_B: "End it with an exclamation mark."}
FEEDBACK = {RULE_A: "The draft must be the question written in upper case.",
            RULE_B: "The answer must end with an exclamation mark."}
RIGHT = "Correct."
GENERIC = "Produce the output fields from the input fields."
IDEAS = ("Read the inputs carefully before answering.", "Answer briefly and precisely.", "Write it in upper case.",
         "Keep the format of the inputs.", "End it with an exclamation mark.")
LUCK = 0.3
SAMPLING = 0.5  # temperatures at or above this are samples
SEPARATOR = "\x1e"  # between the n answers of one request (the server splits them into choices)
_MARKER = re.compile(r"\[\[ ## (\w+) ## \]\]\n(.*?)(?=\n\n|\n\[\[ ## |\Z)", re.S)  # a field: its first paragraph
_OUTPUTS = re.compile(r"Your output fields are:\n(.*?)\n(?:All interactions|\S[^\n]*structured)", re.S)


def output_fields(system: str) -> list[str]:
    """The output field names a Chat-adapter system message asks for."""
    block = _OUTPUTS.search(system)
    return re.findall(r"^\d+\. `(\w+)`", block.group(1), re.M) if block else []


def named(text: str) -> list[str]:
    """The rules whose names appear in ``text``."""
    low = text.lower()
    return [rule for rule in (RULE_A, RULE_B) if rule in low]


def shown(text: str) -> list[str]:
    """The rules named in ``text`` or visible in its data."""
    rules = set(named(text))
    if any(f"{letters.upper()}{digits}" in text for letters, digits in re.findall(r"\b([a-z]+)(\d+)\b", text)):
        rules.add(RULE_A)
    if any(re.search(rf"\b{re.escape(token)}\b(?!!)", text) for token in re.findall(r"\b([A-Za-z]+\d+)!", text)):
        rules.add(RULE_B)
    return [rule for rule in (RULE_A, RULE_B) if rule in rules]


def instruction(rules: list[str], base: str = GENERIC) -> str:
    return " ".join([base, *(SENTENCE[r] for r in rules)])


def _chat(values: dict[str, str]) -> str:
    return "".join(f"[[ ## {k} ## ]]\n{v}\n\n" for k, v in values.items()) + "[[ ## completed ## ]]"


def _attempts(text: str) -> list[tuple[str, float]]:
    """COPRO's attempts (instruction, score) as either library lists them."""
    dspy_instr = dict(re.findall(r"Instruction #(\d+): (.*?)(?:»|\n|\Z)", text))
    dspy_score = dict(re.findall(r"Resulting Score #(\d+): ([\d.]+)", text))
    if dspy_instr:
        return [(dspy_instr[n], float(dspy_score.get(n, 0))) for n in dspy_instr]
    return [(instr, float(score)) for score, instr in
            re.findall(r"Attempt \d+ \(score ([\d.]+)%?\):\s*\ninstruction: (.*?)\n", text)]


def _lucky(role: str, inputs: dict[str, str], k: int | None) -> bool:
    if k is None:
        return False
    digest = hashlib.sha256(json.dumps([role, inputs, k], sort_keys=True).encode()).hexdigest()
    return int(digest[:8], 16) / 0x100000000 < LUCK


class Model:
    """The simulated model (one per server: it counts the samples of each request)."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()

    def samples(self, system: str, messages: list[dict], temperature: float | None, n: int) -> list[int | None]:
        """The sample numbers of this request's ``n`` answers (None each: not sampling)."""
        if temperature is None or temperature < SAMPLING:
            return [None] * n
        key = hashlib.sha256(json.dumps([system, messages]).encode()).hexdigest()
        with self._lock:
            first = self._seen.get(key, 0)
            self._seen[key] = first + n
        return list(range(first, first + n))

    def answer(self, system: str, messages: list[dict], params: dict) -> str:
        """The text of one chat request (``messages`` without the system message); ``n`` answers are joined
        by SEPARATOR."""
        n = int(params.get("n") or 1)
        return SEPARATOR.join(self.one(system, messages, k)
                              for k in self.samples(system, messages, params.get("temperature"), n))

    def one(self, system: str, messages: list[dict], k: int | None) -> str:
        users = [m["content"] for m in messages if m["role"] == "user"]
        last = users[-1] if users else ""
        fields = output_fields(system)
        if not fields and "```" in last and "new instruction" in last.lower():  # a GEPA reflection
            return "```\n" + instruction(named(last)) + "\n```"
        given = {key: value.strip() for key, value in _MARKER.findall(last)}
        values: dict[str, str] = {}
        for name in fields or ["answer"]:
            if name == "draft":
                question = given.get("question", "")
                values[name] = question.upper() if RULE_A in system.lower() or _lucky(name, given, k) else question
            elif name == "answer":
                draft = given.get("draft", "")
                apply = RULE_B in system.lower() or _lucky(name, given, k)
                values[name] = draft + "!" if apply and not draft.endswith("!") else draft
            elif name in ("observations", "summary"):
                rules = shown(last)
                values[name] = " ".join(["The examples are short questions with short drafts and answers."]
                                        + [f"Observed rule: {SENTENCE[r]}" for r in rules])
            elif name == "proposed_prefix_for_output_field":
                values[name] = "Result:"
            elif name == "proposed_instruction" and "proposed_prefix_for_output_field" in fields:  # COPRO
                idea = IDEAS[(k or 0) % len(IDEAS)]
                attempts = _attempts(last)
                keep: list[str] = []
                if attempts and max(s for _, s in attempts) > min(s for _, s in attempts):
                    keep = named(max(attempts, key=lambda a: a[1])[0])
                if named(idea):  # the idea is a guess at a rule
                    values[name] = instruction([r for r in (RULE_A, RULE_B) if r in keep or r in named(idea)])
                else:
                    values[name] = instruction(keep, base=idea)
            elif name == "proposed_instruction":  # MIPROv2's grounded proposal
                tip = given.get("tip", "").lower()
                astray = "persona" in tip or "creativ" in tip
                values[name] = instruction([] if astray else shown(last))
            elif name == "module_advice":  # SIMBA's rule introspection
                raw = given.get("module_names", "")
                try:
                    modules = [str(m) for m in json.loads(raw)]
                except ValueError:
                    modules = [m.strip() for m in raw.split(",") if m.strip()]
                rules = shown(last)
                values[name] = json.dumps({m: " ".join(SENTENCE[r] for r in rules) for m in modules} if rules else {})
            elif name == "discussion":
                values[name] = "The worse run differs from the reference fields."
            elif "instruction" in name:  # a reflection written as a signature (new_instruction)
                values[name] = instruction(named(last))
            elif name == "reasoning":
                values[name] = "The inputs are given; follow the instruction."
            else:
                values[name] = "A program that drafts an answer to a short question, then writes the answer."
        if "Respond with a JSON object" in last:  # a JSON adapter's request
            return json.dumps(values)
        return _chat(values)


def rows(n: int, prefix: str = "q", start: int = 0) -> list[dict]:
    """``n`` examples (question, draft, answer); question i is upper case for an odd i, ends with "!" when
    ``i // 2`` is odd: a multiple of 4 of them holds each of the four kinds equally."""
    out = []
    for i in range(start, start + n):
        base, bang = f"{prefix}{i}", "!" if (i // 2) % 2 else ""
        question = (base.upper() if i % 2 else base) + bang
        out.append({"question": question, "draft": base.upper() + bang, "answer": base.upper() + "!"})
    return out


def score_and_feedback(gold_draft: str, gold_answer: str, draft: str, answer: str) -> tuple[float, str]:
    """1.0 when the answer is right; the feedback names what was wrong (the draft, the final "!")."""
    if answer.strip() == gold_answer:
        return 1.0, RIGHT
    wrong = ([FEEDBACK[RULE_A]] if draft.strip() != gold_draft else []) + \
        ([FEEDBACK[RULE_B]] if not answer.strip().endswith("!") else [])
    return 0.0, "Wrong: " + " ".join(wrong or ["the answer differs from the reference."])
