"""Writing new instructions: MIPROv2's grounded proposals and GEPA's reflections.

Grounded proposals (MIPROv2) show the proposer LM a summary of the data, the program's predictors, a demo
set and a random tip, at temperature ~1 with a rollout id per proposal (so the cache does not hand back
the same proposal). A reflection (GEPA) shows the reflection LM one predictor's instruction beside what
it was given, what it answered and what the metric said about it. Either way a proposal that cannot be
read is a :class:`ProposalRejected`, which the optimizers record and skip: it never stops a compile.
"""

from __future__ import annotations

import random
import re
from typing import Any, Mapping, Sequence

from ..adapters.base import render_value
from ..errors import AdapterParseError, BudgetExceeded, DspexError, LMError
from ..evaluate.result import EvalRow
from ..primitives import Example
from ..programs import Module, Predict
from ..signature import InputField, OutputField, Signature

# Tips vary the proposals (as MIPROv2's): one is drawn per proposal from a seeded generator.
TIPS: dict[str, str] = {
    "none": "",
    "creative": "Be creative: an unusual framing of the task may work better.",
    "simple": "Keep the instruction short and clear.",
    "description": "Make the instruction detailed and informative.",
    "high_stakes": "Describe a high-stakes scenario in which the task must be solved correctly.",
    "persona": 'Give the model a persona relevant to the task ("You are a ...").',
}
MAX_INSTRUCTION_CHARS = 4000  # a proposal longer than this is not an instruction but a runaway answer


class ProposalRejected(DspexError):
    """A proposer or reflection LM answered something that is not a usable instruction (the message
    says what); the compile records it and goes on."""


class DescribeData(Signature):
    """Given a sample of a dataset's examples, write observations about it: what the inputs look like, what
    the answers look like, and any rule that links the answers to the inputs."""

    examples: str = InputField(desc="a sample of the dataset's examples")
    observations: str = OutputField(desc="observations about the data and the task, in a few sentences")


class ProposeInstruction(Signature):
    """Use the information below to learn about a task that a language-model program solves, then write a new
    instruction for one of its predictors that will make a language model solve the task better."""

    dataset_description: str = InputField(desc="a description of the dataset")
    program_description: str = InputField(desc="the program's predictors and what each reads and writes")
    predictor: str = InputField(desc="the predictor the instruction is for")
    examples: str = InputField(desc="example inputs and outputs of that predictor")
    current_instruction: str = InputField(desc="the predictor's instruction today")
    tip: str = InputField(desc="a suggestion for how to write the instruction")
    proposed_instruction: str = OutputField(desc="the new instruction, and nothing else")


def describe_program(program: Module) -> str:
    """The program as a proposer sees it: each predictor's name, signature and instruction."""
    lines = []
    for name, p in program.named_predictors():
        lines.append(f"- {name}: {p.signature.signature_string()} (instruction: {p.signature.instructions})")
    return f"A {type(program).__name__} program with {len(lines)} predictor(s):\n" + "\n".join(lines)


def format_examples(examples: Sequence[Mapping[str, Any]]) -> str:
    blocks = []
    for i, ex in enumerate(examples, 1):
        fields = "\n".join(f"{k}: {render_value(v)}" for k, v in ex.items())
        blocks.append(f"Example {i}:\n{fields}")
    return "\n\n".join(blocks) if blocks else "(no examples)"


def checked_instruction(text: Any, current: str) -> str:
    """The proposal as an instruction, or ProposalRejected saying why it is not one."""
    if not isinstance(text, str) or not text.strip():
        raise ProposalRejected("the proposal is empty")
    text = text.strip()
    if len(text) > MAX_INSTRUCTION_CHARS:
        raise ProposalRejected(f"the proposal is {len(text)} characters long (at most {MAX_INSTRUCTION_CHARS})")
    if text == current.strip():
        raise ProposalRejected("the proposal repeats the current instruction")
    return text


class GroundedProposer:
    """MIPROv2's proposals for one program: ``describe_data`` once, then ``propose`` per candidate."""

    def __init__(self, lm: Any, trainset: Sequence[Example], program: Module, seed: int,
                 temperature: float = 1.0, sample_size: int = 10) -> None:
        self.lm, self.program, self.seed, self.temperature = lm, program, seed, temperature
        rng = random.Random(seed)
        self.sample = rng.sample(list(trainset), min(sample_size, len(trainset)))

    def describe_data(self) -> str:
        describe = Predict(DescribeData, lm=self.lm, temperature=0.0)
        return describe(examples=format_examples([dict(ex.items()) for ex in self.sample])).observations

    def tip(self, predictor: str, index: int) -> str:
        """The tip for one proposal: a function of the seed and the proposal, not of the order they run in."""
        return TIPS[random.Random(f"{self.seed}:{predictor}:{index}").choice(sorted(TIPS))]

    def propose(self, predictor: str, index: int, demos: Sequence[Mapping[str, Any]], summary: str) -> str:
        """A new instruction for ``predictor`` (proposal ``index``); ProposalRejected if unusable."""
        target = dict(self.program.named_predictors())[predictor]
        current = target.signature.instructions
        propose = Predict(ProposeInstruction, lm=self.lm, temperature=self.temperature, rollout=index)
        try:
            answer = propose(dataset_description=summary, program_description=describe_program(self.program),
                             predictor=f"{predictor}: {target.signature.signature_string()}",
                             examples=format_examples(list(demos)[:3]), current_instruction=current,
                             tip=self.tip(predictor, index) or "(none)")
        except AdapterParseError as exc:
            raise ProposalRejected(f"the proposer's answer could not be parsed: {exc}") from None
        except BudgetExceeded:
            raise  # not a bad proposal: the compile is out of budget (CompileJob.charged stops it)
        except LMError as exc:
            raise ProposalRejected(f"the proposer LM failed: {type(exc).__name__}: {exc}") from None
        return checked_instruction(answer.proposed_instruction, current)


REFLECTION_PROMPT = """An assistant was given this instruction for a task:
```
{instruction}
```

Below are some of the task's inputs, the assistant's answers and feedback on each answer:
```
{examples}
```

Write a new, better instruction for the assistant. Work out from the inputs what the task is and what
format the inputs have. Read every answer and its feedback; put into the instruction every fact, rule or
domain-specific detail the feedback reveals (the assistant will not see this feedback later), and any
general strategy that worked.

Give the new instruction inside one ``` block."""


def reflective_dataset(rows: Sequence[EvalRow], predictor: str) -> list[dict[str, Any]]:
    """What one predictor was given and answered on a minibatch, with the metric's feedback, as DSPy's
    GEPA hands it to an instruction proposer: ``{"Inputs", "Generated Outputs", "Feedback"}`` per example
    (a failed call's error is its feedback: a parse failure is something to fix in the instruction)."""
    records = []
    for row in rows:
        steps = [s for s in (getattr(row.prediction, "trace", None) or []) if s.predictor == predictor]
        inputs = steps[0].inputs if steps else dict(row.example.inputs())
        if row.error is not None:
            feedback = f"The call failed ({type(row.error).__name__}): {str(row.error)[:500]}"
        elif row.feedback:
            feedback = row.feedback
        else:
            expected = {k: v for k, v in row.example.items() if k not in row.example.inputs()}
            feedback = f"score {row.score:g}" + (f"; expected {render_value(expected)}" if expected else "")
        records.append({"Inputs": dict(inputs), "Generated Outputs": dict(steps[-1].outputs) if steps else None,
                        "Feedback": feedback})
    return records


def reflective_examples(rows: Sequence[EvalRow], predictor: str) -> str:
    """The reflective dataset as the reflection prompt shows it."""
    blocks = []
    for n, record in enumerate(reflective_dataset(rows, predictor), 1):
        lines = [f"# Example {n}", "## Inputs", *(f"{k}: {render_value(v)}" for k, v in record["Inputs"].items())]
        if record["Generated Outputs"] is not None:
            lines += ["## Answer", *(f"{k}: {render_value(v)}" for k, v in record["Generated Outputs"].items())]
        lines += ["## Feedback", record["Feedback"]]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def extract_block(text: str) -> str:
    """The content of the answer's ``` block (a language tag after the fence dropped); a block opened and
    never closed runs to the end, and an answer with no fence at all is the instruction itself, stripped
    (as gepa reads it: small models often leave the fence out)."""
    match = re.search(r"```[^\n`]*\n?(.*?)```", text, re.DOTALL) or re.search(r"```[^\n`]*\n?(.*)", text, re.DOTALL)
    return match.group(1) if match is not None else text.strip()


def reflect(lm: Any, instruction: str, rows: Sequence[EvalRow], predictor: str, rollout: int) -> str:
    """GEPA's reflection: a new instruction for ``predictor`` from its minibatch rows."""
    prompt = REFLECTION_PROMPT.format(instruction=instruction, examples=reflective_examples(rows, predictor))
    try:
        completion = lm.request([{"role": "user", "content": prompt}], rollout=rollout)
    except BudgetExceeded:
        raise  # not a bad reflection: the compile is out of budget (CompileJob.charged stops it)
    except LMError as exc:
        raise ProposalRejected(f"the reflection LM failed: {type(exc).__name__}: {exc}") from None
    return checked_instruction(extract_block(completion.text), instruction)


__all__ = ["GroundedProposer", "ProposalRejected", "reflect", "reflective_examples", "reflective_dataset", "describe_program", "TIPS",
           "extract_block", "checked_instruction"]
