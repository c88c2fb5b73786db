"""Runs inside the DSPy venv: DSPy 3.4.1's optimizers on the local model through its OpenAI-compatible
server (the same SmolLM2-135M process dspex uses), on the split the parent passes. Prints one JSON line.

usage: dspy_quality_bench.py URL SPLIT_JSON [fewshot | instructions | optimizers]
"""

import json
import sys
import time

import dspy

url, split_path = sys.argv[1], sys.argv[2]
which = sys.argv[3] if len(sys.argv) > 3 else "fewshot"
split = json.loads(open(split_path).read())
dspy.configure(lm=dspy.LM("openai/smollm2-135m", api_base=url, api_key="local", max_tokens=8, temperature=0.0))


def ex(row):
    return dspy.Example(review=row["review"], sentiment=row["sentiment"]).with_inputs("review")


train, val, dev = ([ex(r) for r in split[k]] for k in ("train", "val", "dev"))


class Sentiment(dspy.Signature):
    """Classify the sentiment of the review as positive or negative."""

    review: str = dspy.InputField()
    sentiment: str = dspy.OutputField()


def correct(example, pred, trace=None):
    words = str(getattr(pred, "sentiment", "") or "").strip().lower().split()
    return bool(words) and words[0].strip(".,!:;\"'") == example.sentiment


def score(program):
    result = dspy.Evaluate(devset=dev, metric=correct, num_threads=2, display_progress=False,
                           max_errors=10 ** 6)(program)
    return result.score / 100.0


out = {}
student = dspy.Predict(Sentiment)
writer = dspy.LM("openai/smollm2-135m", api_base=url, api_key="local", max_tokens=200, temperature=0.0)


def feedback(gold, pred, trace=None, pred_name=None, pred_trace=None):
    return correct(gold, pred)


runs = {
    "fewshot": (("zero-shot", lambda: student),
                ("LabeledFewShot", lambda: dspy.LabeledFewShot(k=6).compile(student, trainset=train)),
                ("BootstrapFewShot", lambda: dspy.BootstrapFewShot(
                    metric=correct, max_bootstrapped_demos=4, max_labeled_demos=6).compile(student, trainset=train)),
                ("random search", lambda: dspy.BootstrapFewShotWithRandomSearch(
                    metric=correct, num_candidate_programs=4, max_bootstrapped_demos=4, max_labeled_demos=6,
                    num_threads=2).compile(student, trainset=train, valset=val))),
    "instructions": (("zero-shot", lambda: student),
                     ("MIPROv2 auto=light", lambda: dspy.MIPROv2(metric=correct, prompt_model=writer, auto="light",
                                                                 num_threads=2).compile(student, trainset=train,
                                                                                        valset=val)),
                     ("GEPA auto=light", lambda: dspy.GEPA(metric=feedback, reflection_lm=writer, auto="light",
                                                           num_threads=2).compile(student, trainset=train,
                                                                                  valset=val))),
    "optimizers": (("COPRO", lambda: dspy.COPRO(prompt_model=writer, metric=correct, breadth=4, depth=2).compile(
                        student, trainset=train, eval_kwargs={"num_threads": 2, "display_progress": False})),
                   ("SIMBA", lambda: dspy.SIMBA(metric=correct, bsize=16, num_candidates=4, max_steps=4, max_demos=2,
                                                prompt_model=writer, num_threads=2).compile(student, trainset=train)),
                   ("InferRules", lambda: dspy.InferRules(num_candidates=4, num_rules=5, num_threads=2,
                                                          teacher_settings={"lm": writer}, metric=correct,
                                                          max_bootstrapped_demos=4, max_labeled_demos=6).compile(
                       student, trainset=train, valset=val)),
                   ("BootstrapFewShotWithOptuna", lambda: dspy.BootstrapFewShotWithOptuna(
                       metric=correct, num_candidate_programs=4, max_bootstrapped_demos=4, max_labeled_demos=6,
                       num_threads=2).compile(student, max_demos=4, trainset=train, valset=val))),
}[which]
for name, make in runs:
    t0 = time.perf_counter()
    try:
        program = make()
        compile_s = time.perf_counter() - t0
        out[name] = {"dev": score(program), "compile_s": compile_s, "wall_s": time.perf_counter() - t0}
    except Exception as exc:  # noqa: BLE001 - a failed optimizer is reported, the others still run
        out[name] = {"error": f"{type(exc).__name__}: {str(exc)[:160]}"}
print(json.dumps(out))
