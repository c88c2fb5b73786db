"""MIPROv2 and GEPA on the instruction-sensitive simulated task: they find the rule, say what they tried,
give the same program whatever parallel_trials is, and resume after kill -9 to the identical program."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import dspex
from dspex.testing import Faults, ProviderServer, instruction_task

from .conftest import KEY, feedback_metric, task_answer, task_data

ORIGINAL = "Given the fields `question`, produce the fields `answer`."


def mipro(**options):
    return dspex.MIPROv2(metric=feedback_metric, auto=None, num_candidates=5, num_trials=10, minibatch_size=8,
                         minibatch_full_eval_steps=3, max_bootstrapped_demos=2, max_labeled_demos=2, **options)


def gepa(**options):
    return dspex.GEPA(metric=feedback_metric, max_metric_calls=200, **options)


OPTIMIZERS = {"mipro": mipro, "gepa": gepa}


def compile_with(name, lm, **job_options):
    return OPTIMIZERS[name]().compile(dspex.Predict("question -> answer", lm=lm), trainset=task_data(16, "t"),
                                      valset=task_data(16, "v"), **job_options)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_the_optimizer_finds_the_rule_the_instruction_needs(task_lm, name):
    compiled = compile_with(name, task_lm)
    report = compiled.compile_report
    assert report.baseline_score == 50.0 and report.score >= 95
    assert instruction_task.RULE in compiled.signature.instructions
    assert report.candidates[0].instructions == {"self": ORIGINAL}  # the original instruction is candidate 0
    tried = {text for c in report.candidates for text in c.instructions.values()}
    assert instruction_task.WITH_RULE in tried and ORIGINAL in tried
    assert report.metric_calls > 0 and report.stopped == "done"
    assert dspex.Evaluate(task_data(10, "x"), feedback_metric, progress=False).run(compiled).score == 100.0


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_the_same_seed_gives_the_same_program_whatever_parallel_trials_is(task_sim, tmp_path, name):
    results = []
    for parallel in (1, 8):
        with dspex.runtime("local", cache_dir=tmp_path / f"cache-{parallel}", log_level="warning"):
            lm = dspex.LM("openai/task", api_key=KEY, base_url=task_sim.base_url())
            compiled = compile_with(name, lm, parallel_trials=parallel)
        report = compiled.compile_report
        results.append((compiled.signature.instructions, compiled.demos, report.score, report.metric_calls,
                        [(c.instructions, c.score, c.full) for c in report.candidates]))
    assert results[0] == results[1]


def test_mipro_full_scores_choose_the_program_and_go_back_to_the_sampler(task_lm, tmp_path):
    compiled = compile_with("mipro", task_lm, run_dir=tmp_path / "run")
    journal = [json.loads(line) for line in (tmp_path / "run" / "journal.jsonl").read_text().splitlines()]
    kinds = [e["kind"] for e in journal]
    assert kinds.count("trial") == 10 and kinds.count("summary") == 1
    assert kinds.count("proposal") == 4  # num_candidates - 1 proposals for the one predictor
    fulls = [e for e in journal if e["kind"] == "full"]
    assert len(fulls) >= 1 + 10 // 3  # the baseline, then one every minibatch_full_eval_steps trials
    best_full = max(e["score"] for e in fulls)
    assert compiled.compile_report.score == round(100 * best_full, 2)
    minibatches = [tuple(e["minibatch"]) for e in journal if e["kind"] == "trial"]
    assert len(set(minibatches)) > 1 and all(len(m) == 8 for m in minibatches)  # a fresh minibatch per trial
    assert sum(c.trials for c in compiled.compile_report.candidates) == 10  # each trial counted for its candidate


def test_mipro_without_minibatches_counts_each_candidate_s_trials(task_lm):
    compiled = dspex.MIPROv2(metric=feedback_metric, auto=None, num_candidates=3, num_trials=6, minibatch_size=35,
                             max_bootstrapped_demos=2, max_labeled_demos=2).compile(
        dspex.Predict("question -> answer", lm=task_lm), trainset=task_data(16, "t"), valset=task_data(16, "v"))
    candidates = compiled.compile_report.candidates  # a valset smaller than the minibatch: trials score it whole
    assert sum(c.trials for c in candidates) == 6 and all(c.full for c in candidates)


def test_mipro_settings_are_checked():
    with pytest.raises(dspex.ConfigError, match="auto='light' sizes num_candidates"):
        dspex.MIPROv2(metric=feedback_metric, auto="light", num_candidates=4)
    with pytest.raises(dspex.ConfigError, match="auto must be one of"):
        dspex.MIPROv2(metric=feedback_metric, auto="huge")
    with pytest.raises(dspex.ConfigError, match="set num_candidates"):
        dspex.MIPROv2(metric=feedback_metric, auto=None)
    from dspex.teleprompt.mipro import trials_for

    assert trials_for(2, 6) == 10 and trials_for(1, 12) == 18  # DSPy's max(2·M·log2 n, 1.5·n)


def test_gepa_budget_options_and_the_floor(task_lm):
    with pytest.raises(dspex.ConfigError, match="exactly one of"):
        dspex.GEPA(metric=feedback_metric, auto="light", max_metric_calls=100)
    with pytest.raises(dspex.ConfigError, match="exactly one of"):
        dspex.GEPA(metric=feedback_metric)
    before = len(dspex.current_runtime().usage().by_run)
    with pytest.raises(dspex.ConfigError, match=r"cannot hold even one proposal: it needs about 73"):
        dspex.GEPA(metric=feedback_metric, max_metric_calls=50).compile(
            dspex.Predict("question -> answer", lm=task_lm), trainset=task_data(8, "t"), valset=task_data(16, "v"))
    assert len(dspex.current_runtime().usage().by_run) == before  # refused before anything was sent
    from dspex.teleprompt.gepa import auto_budget

    assert auto_budget(1, 6, 20) == 20 + 30 + 10 * 35 + 3 * 20  # DSPy's sizing for auto="light"


def test_gepa_reflects_on_the_metric_feedback(task_lm, task_sim):
    compile_with("gepa", task_lm)
    reflections = [r for r in task_sim.log if "new instruction" in json.dumps(r.body)]
    assert reflections
    prompt = reflections[0].body["messages"][-1]["content"]
    assert instruction_task.FEEDBACK_WRONG in prompt and "## Answer" in prompt and ORIGINAL in prompt


def test_gepa_takes_a_dspy_feedback_metric_with_pred_name_and_pred_trace(task_lm):
    def dspy_metric(gold, pred, trace, pred_name, pred_trace):
        return feedback_metric(gold, pred)

    compiled = dspex.GEPA(metric=dspy_metric, max_metric_calls=200).compile(
        dspex.Predict("question -> answer", lm=task_lm), trainset=task_data(16, "t"), valset=task_data(16, "v"))
    assert compiled.compile_report.score >= 95


def garbage_reflections(req) -> str:
    if "new instruction" in req.last_user:
        return "```\n   \n```"  # an empty block: unusable
    return task_answer(req)


def unfenced_reflections(req) -> str:
    if "new instruction" in req.last_user:  # the right instruction, without the fence it was asked for
        return "  " + task_answer(req).strip("`\n") + "\n"
    return task_answer(req)


def test_a_reflection_without_the_fence_is_used_whole_as_gepa_does(tmp_path):
    with ProviderServer(answer=unfenced_reflections, api_key=KEY) as server, \
            dspex.runtime("local", cache_dir=tmp_path / "cache", log_level="warning"):
        lm = dspex.LM("openai/task", api_key=KEY, base_url=server.base_url())
        compiled = gepa(use_merge=False).compile(dspex.Predict("question -> answer", lm=lm),
                                                 trainset=task_data(16, "t"), valset=task_data(16, "v"))
    assert compiled.compile_report.score >= 95 and instruction_task.RULE in compiled.signature.instructions


def test_a_reflection_lm_that_answers_garbage_is_recorded_and_skipped(tmp_path):
    with ProviderServer(answer=garbage_reflections, api_key=KEY) as server, \
            dspex.runtime("local", cache_dir=tmp_path / "cache", log_level="warning"):
        lm = dspex.LM("openai/task", api_key=KEY, base_url=server.base_url())
        compiled = gepa(use_merge=False).compile(dspex.Predict("question -> answer", lm=lm),
                                                 trainset=task_data(16, "t"), valset=task_data(16, "v"),
                                                 run_dir=tmp_path / "run")
    report = compiled.compile_report
    assert report.stopped == "done" and report.score == 50.0 and len(report.candidates) == 1
    journal = [json.loads(line) for line in (tmp_path / "run" / "journal.jsonl").read_text().splitlines()]
    rejected = [e for e in journal if e["kind"] == "reflection"]
    assert rejected and all(e["instruction"] is None and "empty" in e["error"] for e in rejected)


def test_mipro_skips_a_proposal_it_cannot_parse(tmp_path):
    def unparseable(req):
        if "proposed_instruction" in req.system:
            return "no markers at all"
        return task_answer(req)

    with ProviderServer(answer=unparseable, api_key=KEY) as server, \
            dspex.runtime("local", cache_dir=tmp_path / "cache", log_level="warning"):
        lm = dspex.LM("openai/task", api_key=KEY, base_url=server.base_url())
        compiled = compile_with("mipro", lm, run_dir=tmp_path / "run")
    assert compiled.compile_report.stopped == "done" and compiled.signature.instructions == ORIGINAL
    journal = [json.loads(line) for line in (tmp_path / "run" / "journal.jsonl").read_text().splitlines()]
    assert all(e["instruction"] is None and e["error"] for e in journal if e["kind"] == "proposal")


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_under_injected_429_and_5xx_the_compile_finishes_with_exact_accounting(tmp_path, name):
    faults = Faults(error_rates={429: 0.1, 500: 0.1, 503: 0.1}, retry_after=0.05, seed=3)
    with ProviderServer(answer=task_answer, api_key=KEY, faults=faults) as server, \
            dspex.runtime("local", cache_dir=tmp_path / "cache", log_level="error"):
        # rpm=None: how the default adaptive limiter treats 429s is tested with the clients (scattered ones
        # that name no limit leave it alone); here the point is the accounting
        lm = dspex.LM("openai/task", api_key=KEY, base_url=server.base_url(), cache=False, rpm=None)
        compiled = compile_with(name, lm)
        report = compiled.compile_report
        assert report.score >= 95
        # every request the provider saw is in the compile's ledger count (answered or retried)
        assert report.usage.requests + report.usage.retries == len(server.log)
        assert report.usage.prompt_tokens == sum(r.prompt_tokens for r in server.log)


RUNNER = textwrap.dedent("""
    import sys, json, dspex
    sys.path.insert(0, sys.argv[3])
    from tests.dspex.teleprompt.test_instructions import compile_with
    with dspex.runtime("local", cache_dir=sys.argv[2] + "/cache", log_level="error"):
        lm = dspex.LM("openai/task", api_key=sys.argv[4], base_url=sys.argv[1], cache=False)
        compiled = compile_with(sys.argv[5], lm, run_dir=sys.argv[2] + "/run", max_concurrency=1, parallel_trials=1)
        report = compiled.compile_report
        print(json.dumps([compiled.signature.instructions, compiled.demos, report.score, report.metric_calls,
                          [(c.instructions, c.score) for c in report.candidates]]))
""")


def _run(sim, directory, name, root):
    return [sys.executable, "-c", RUNNER, sim.base_url(), str(directory), root, KEY, name]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_kill_9_anywhere_then_resume_gives_the_identical_program(tmp_path_factory, name):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    with ProviderServer(answer=task_answer, api_key=KEY) as sim:
        clean = subprocess.run(_run(sim, tmp_path_factory.mktemp("clean"), name, root), capture_output=True,
                               text=True, timeout=180)
        assert clean.returncode == 0, clean.stderr[-2000:]
        uninterrupted = len(sim.log)
        expected = json.loads(clean.stdout.splitlines()[-1])

        @settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        @given(st.floats(min_value=0.05, max_value=0.9))
        def killed_at(fraction):
            directory = tmp_path_factory.mktemp("killed")
            sim.clear_log()
            proc = subprocess.Popen(_run(sim, directory, name, root), stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and len(sim.log) < fraction * uninterrupted and proc.poll() is None:
                time.sleep(0.005)
            os.kill(proc.pid, signal.SIGKILL)
            proc.communicate()
            first_part = len(sim.log)
            resumed = subprocess.run(_run(sim, directory, name, root), capture_output=True, text=True, timeout=180)
            assert resumed.returncode == 0, resumed.stderr[-2000:]
            assert json.loads(resumed.stdout.splitlines()[-1]) == expected
            assert first_part < uninterrupted  # it really was cut short
            # one request at a time: what was in flight at the kill is asked twice (one request); on a loaded
            # machine up to two more were seen when the kill lands in the first bootstrap (noted on issue 14)
            assert len(sim.log) <= uninterrupted + 3

        killed_at()


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_a_token_budget_stops_the_search_with_the_best_so_far(task_sim, tmp_path, name):
    with dspex.runtime("local", log_level="error", cache_dir=tmp_path / "cache"):
        lm = dspex.LM("openai/task", api_key=KEY, base_url=task_sim.base_url(), cache=False)
        whole = compile_with(name, lm).compile_report.usage.total_tokens
        budget = int(whole * 0.6)
        compiled = compile_with(name, lm, budget_tokens=budget, max_concurrency=4)
    report = compiled.compile_report
    assert report.stopped == "budget"
    # dispatching stops once the budget is spent by all the trials in flight together; what is in flight
    # then finishes (at most parallel_trials=4 x max_concurrency=4 calls of ~250 tokens here)
    assert budget <= report.usage.total_tokens < budget + 16 * 250
    assert report.score is not None and compiled.signature.instructions in {
        c.instructions["self"] for c in report.candidates if c.full}


@pytest.mark.slow
def test_trials_run_on_worker_processes_and_give_the_same_program(task_sim, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)  # worker processes read provider keys from their environment
    programs = []
    for kind, workers in (("local", None), ("multiproc", 2)):
        with dspex.runtime(kind, cache_dir=tmp_path / f"cache-{kind}", log_level="error"):
            lm = dspex.LM("openai/task", api_key=KEY, base_url=task_sim.base_url())
            compiled = compile_with("mipro", lm, workers=workers, parallel_trials=4)
            programs.append((compiled.signature.instructions, compiled.demos, compiled.compile_report.score))
    assert programs[0] == programs[1] and programs[0][2] >= 0.95


@pytest.mark.multihost
def test_trials_run_on_run_distributed_hosts_and_give_the_same_program(tmp_path):
    from tests.netns import Network

    with Network(2) as net, \
            ProviderServer(answer=task_answer, api_key=KEY, host=net.leader_ip) as server, \
            dspex.runtime("tcp", bind_host=net.leader_ip, peers=[h.ip for h in net.hosts], cache_dir=tmp_path / "c1",
                          log_level="error") as rt:
        hosts = net.start_dspex_hosts(f"{net.leader_ip}:{rt.actors.admin_port}", 19310, {"OPENAI_API_KEY": KEY})
        lm = dspex.LM("openai/task", api_key=KEY, base_url=server.base_url(), cache=False)
        spread = compile_with("gepa", lm, hosts=hosts, workers=1)
        calls = len(server.log)
        with dspex.runtime("local", cache_dir=tmp_path / "c2", log_level="error"):
            alone = compile_with("gepa", dspex.LM("openai/task", api_key=KEY, base_url=server.base_url(),
                                                  cache=False))
    assert spread.signature.instructions == alone.signature.instructions
    assert spread.compile_report.score == alone.compile_report.score >= 95
    assert spread.compile_report.metric_calls == alone.compile_report.metric_calls
    assert calls == len(server.log) - calls  # the same requests, wherever they ran
