"""The dashboard in a real headless Chromium (Debian's, driven by Playwright): the tree, a breaker going
open and closed, an evaluation's progress and rows moving, a drill-down, cancel with the partial result
kept, a compile's candidates; refused without the token or the CSRF token; memory bounded."""

from __future__ import annotations

import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

import dspex
from dspex.dashboard.state import MAX_EVENTS, MAX_ROWS, DashboardState
from dspex.evaluate.result import EvalRow, RowFinished
from dspex.testing import Faults, ProviderServer

from .scripted import chat
from .teleprompt.conftest import answer as fewshot_answer, data as fewshot_data, exact

KEY = "sk-test-dashboard-123456"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("DSPEX_ARTIFACTS", "test-artifacts")) / "dashboard"


def answer(req) -> str:
    if "question" in req.last_user and "[[ ## question ## ]]\nt" in req.last_user:
        return fewshot_answer(req)
    return chat(answer="X")


@pytest.fixture
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not os.path.exists(CHROMIUM):
        pytest.fail("Debian's chromium is not installed: ./run test installs it (apt-get install chromium)")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        try:
            yield chromium
        finally:
            chromium.close()


def more_than(page, selector: str, n: int, timeout: float = 20.0) -> int:
    """Wait until the page has more than ``n`` matches (the page's CSP forbids evaluated strings)."""
    deadline = time.monotonic() + timeout
    while (count := page.locator(selector).count()) <= n:
        assert time.monotonic() < deadline, f"{selector}: still {count} after {timeout}s"
        time.sleep(0.05)
    return count


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@pytest.mark.slow
def test_the_dashboard_live_in_chromium(browser, tmp_path):
    with ProviderServer(answer=answer, api_key=KEY, faults=Faults(latency=0.05)) as sim, \
            dspex.runtime("local", cache_dir=tmp_path / "cache", log_level="error") as rt:
        dash = rt.dashboard(runs_dir=tmp_path / "runs")
        lm = dspex.LM("openai/m", api_key=KEY, base_url=sim.base_url(), cache=False, rpm=None)
        program = dspex.Predict("question -> answer", lm=lm)
        devset = [dspex.Example(question=f"q{i}", answer="X").with_inputs("question") for i in range(3000)]
        results = {}

        def evaluate():
            results["eval"] = dspex.Evaluate(devset, exact, max_concurrency=2, progress=False,
                                             journal=tmp_path / "runs" / "eval.jsonl").run(program)

        (tmp_path / "runs").mkdir()
        worker = threading.Thread(target=evaluate)
        worker.start()
        page = browser.new_page()
        try:
            page.goto(dash.url)
            page.wait_for_selector("#conn:text('live')")
            page.wait_for_selector("#tree tr[data-path='dspex/clients/ledger']")
            assert "running" in page.inner_text("#tree tr[data-path='dspex/clients/ledger'] .status")
            page.wait_for_selector("#runs tr[data-run]")
            page.click("#runs tr[data-run]")
            before = more_than(page, "#rows tr.row", 3)
            more_than(page, "#rows tr.row", before)  # the rows move
            shot(page, "runs-and-rows")
            page.click("#rows tr.row >> nth=0")
            page.wait_for_selector("#detail h4")
            assert "self (openai/m)" in page.inner_text("#detail") and "raw answer" in page.inner_text("#detail")
            assert KEY not in page.content()
            shot(page, "drill-down")
            page.click("#runs button.cancel")
            worker.join(timeout=30)
            result = results["eval"]
            assert result.aborted == "cancelled"
            done = [r for r in result.rows if not r.failed]
            assert 0 < len(done) < len(devset) and len(result.rows) == len(devset)  # the partial result, kept
            page.wait_for_selector("#runs td.progress:has-text('stopped: cancelled')")

            sim.set_faults(Faults(error_rates={500: 1.0}))  # the provider goes down: the breaker opens
            lm.reset_breaker()  # a clean window: it opens on 50% of at least 20 calls, here the 20th failure
            probe = lm.copy(retries=0)
            with ThreadPoolExecutor(20) as pool:
                failures = list(pool.map(lambda i: pytest.raises(dspex.ProviderError, probe.request, f"probe {i}"),
                                         range(20)))
            assert len(failures) == 20 and lm.status().breaker == "open"
            page.wait_for_selector("#clients td.breaker.open")
            page.wait_for_selector("#clients td.errors:has-text('ServerError')")  # failures, by type
            shot(page, "breaker-open")
            sim.set_faults(Faults())
            page.click("#clients button.reset")
            page.wait_for_selector("#clients td.breaker.closed")
            assert lm.status().breaker == "closed"

            compile_lm = dspex.LM("openai/task", api_key=KEY, base_url=sim.base_url(), cache=False, rpm=None)
            compiled = dspex.BootstrapFewShotWithRandomSearch(exact, num_candidate_programs=2, max_bootstrapped_demos=1,
                                                              max_labeled_demos=1).compile(
                dspex.Predict("question -> answer", lm=compile_lm), trainset=fewshot_data(6, "t"),
                valset=fewshot_data(6, "v"))
            assert compiled.compile_report.candidates
            page.wait_for_selector("#runs td:text('compile')")
            page.click("#runs tr[data-run^='compile'] td.run")
            page.wait_for_selector("#best-chart svg")
            shot(page, "compile")
            page.reload()
            page.wait_for_selector("#past tr[data-name='eval.jsonl']")
            shot(page, "tree-and-clients")
        finally:
            page.close()
            worker.join(timeout=30)

        # refused without the token, without the cookie, with a foreign Host, and an action without CSRF
        base = dash.url.split("?")[0]
        assert requests.get(base).status_code == 403
        assert requests.get(base + "?token=wrong").status_code == 403
        assert requests.get(base + "api/state").status_code == 403
        session = requests.Session()
        assert session.get(dash.url).status_code == 200
        assert session.get(base + "api/state", headers={"Host": "evil.example:80"}).status_code == 421
        assert session.post(base + "api/runs/x/cancel").status_code == 403
        anonymous = browser.new_page()
        try:
            anonymous.goto(base)
            assert "token" in anonymous.inner_text("body") and anonymous.locator("#runs").count() == 0
        finally:
            anonymous.close()


def overflow(page, selector: str) -> int:
    """How many pixels ``selector``'s content is wider than its box (0: it fits)."""
    return page.locator(selector).evaluate("e => Math.max(0, e.scrollWidth - e.clientWidth)")


@pytest.mark.slow
def test_the_dashboard_for_prompt_work_in_chromium(browser, tmp_path):
    """What users of MLflow, Phoenix and Langfuse look for: the examples table fills with no click, a row's
    messages as sent and its raw answer, past runs that appear while the page is open, open on click and
    compare row by row, a compile as one run with its candidates (prompts, scores, a diff, the lineage),
    cost and tokens over time per client; every column fits at 1440 px."""
    from dspex.events import CompileProgress

    runs = tmp_path / "runs"
    runs.mkdir()
    with ProviderServer(answer=fewshot_answer, api_key=KEY) as sim, \
            dspex.runtime("local", cache_dir=tmp_path / "cache", log_level="error") as rt:
        dash = rt.dashboard(runs_dir=runs)
        lm = dspex.LM("openai/task", api_key=KEY, base_url=sim.base_url(), cache=False, rpm=None)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        try:
            page.goto(dash.url)
            page.wait_for_selector("#conn:text('live')")
            zero_shot = dspex.Predict("question -> answer", lm=lm)
            devset = fewshot_data(8, "v")
            first = dspex.Evaluate(devset, exact, max_concurrency=2, progress=False, journal=runs / "zero-shot.jsonl")
            assert first.run(zero_shot).score == 50.0
            more_than(page, "#rows tr.row", 7)  # no click: the table follows the newest run
            page.click("#rows tr.row >> nth=1")
            page.wait_for_selector("#detail .message.system")
            detail = page.inner_text("#detail")
            assert "messages sent (2)" in detail and "Your input fields are" in detail and "[[ ## question ## ]]" in detail
            assert "[[ ## answer ## ]]" in page.inner_text("#detail pre.raw") and KEY not in page.content()
            shot(page, "messages")

            page.wait_for_selector("#past tr[data-name='zero-shot.jsonl']")  # no reload: the list re-reads
            few_shot = zero_shot.deepcopy()
            few_shot.demos = [fewshot_data(1, "d")[0]]
            assert dspex.Evaluate(devset, exact, max_concurrency=2, progress=False,
                                  journal=runs / "few-shot.jsonl").run(few_shot).score == 100.0
            page.wait_for_selector("#past tr[data-name='few-shot.jsonl']")
            page.check("#past tr[data-name='zero-shot.jsonl'] input.pick")
            page.check("#past tr[data-name='few-shot.jsonl'] input.pick")
            page.click("#compare-button")
            page.wait_for_selector("#compare-rows tbody tr")
            assert page.locator("#compare-rows tbody tr").count() == 8
            # the odd ones, right only with the demo (few-shot.jsonl is listed, so compared, first)
            assert page.locator("#compare-rows tbody tr.worse").count() == 4
            assert "examples scored differently: 4" in page.inner_text("#compare")
            shot(page, "compare-runs")
            page.click("#past tr[data-name='zero-shot.jsonl'] td:nth-child(2)")
            page.wait_for_selector("#rows-run:text('zero-shot.jsonl (journal)')")
            assert page.locator("#rows tr.row").count() == 8

            compiled = dspex.BootstrapFewShotWithRandomSearch(exact, num_candidate_programs=2, max_bootstrapped_demos=1,
                                                              max_labeled_demos=1).compile(
                zero_shot, trainset=fewshot_data(6, "t"), valset=devset)
            scored = [c for c in compiled.compile_report.candidates]
            page.wait_for_selector("#runs tr[data-run^='compile'] td.progress:has-text('finished')")
            assert page.locator("#runs tr[data-run*=':']").count() == 0  # its evaluations are inside it
            page.click("#runs tr[data-run^='compile'] td.run")
            page.wait_for_selector("#compile-view:not([hidden]) #candidates tbody tr")
            # the table fills as the page's polls bring the compile's steps: wait for all of them (bounded)
            page.wait_for_function("n => document.querySelectorAll('#candidates tbody tr').length >= n",
                                   arg=len(scored), timeout=10_000)
            assert page.locator("#candidates tbody tr").count() == len(scored)
            assert page.locator("#candidates tbody tr.best").count() >= 1
            page.click("#candidates tbody tr >> nth=0")
            page.wait_for_selector("#candidate pre.instructions")
            assert "Given the fields `question`" in page.inner_text("#candidate pre.instructions")
            page.check("#candidates tbody tr >> nth=0 >> input.cand-pick")
            page.check("#candidates tbody tr >> nth=-1 >> input.cand-pick")
            page.click("#diff-button")
            page.wait_for_selector("#diff pre.diff div")
            assert page.locator("#diff .ins, #diff .del").count() > 0  # the demos they differ in
            page.wait_for_selector("#clients svg.spark[data-series='tokens'] polyline", state="attached")
            points = page.get_attribute("#clients svg.spark[data-series='tokens'] polyline", "points")
            assert len(set(p.split(',')[1] for p in points.split())) > 1  # the tokens grew over time
            shot(page, "compile-candidates")

            for n, parents in enumerate([(), (0,), (0,), (1, 2)]):  # GEPA's lineage: a merge of two children
                rt.publish(CompileProgress("compile-lineage-1", "GEPA", "candidates", n, 50.0 + 10 * n, 50.0 + 10 * n,
                                           n, 0.0, None, parents=parents))
            page.click("#runs tr[data-run='compile-lineage-1'] td.run")
            page.wait_for_selector("#lineage circle >> nth=3")
            assert page.locator("#lineage line").count() == 4
            for section in ("#runs-view", "#compile-view", "#rows-view", "#clients-view", "#past-view", "#tree-view"):
                assert overflow(page, section) == 0, f"{section} does not fit at 1440 px"
        finally:
            page.close()


def test_binding_another_interface_needs_the_explicit_flag(tmp_path):
    with dspex.runtime("local", cache_dir=tmp_path, log_level="error") as rt:
        with pytest.raises(dspex.ConfigError, match="allow_remote=True"):
            rt.dashboard(host="0.0.0.0")
        board = rt.dashboard()
        assert board.url.startswith("http://127.0.0.1:") and "token=" in board.url and "token" not in repr(board)
    assert not board._thread.is_alive()  # closed with the runtime


def test_a_long_stream_of_events_keeps_the_state_bounded(tmp_path):
    with dspex.runtime("local", cache_dir=tmp_path, log_level="error") as rt:
        state = DashboardState(rt)
        pushed = []
        stop = state.listen(pushed.append)
        example = dspex.Example(question="q", answer="a").with_inputs("question")
        for i in range(MAX_ROWS * 3):
            rt.publish(RowFinished("run-1", EvalRow(i, example, dspex.Prediction(answer="a"), 1.0)))
        for i in range(MAX_EVENTS * 3):
            from supervision.messages import ActorEvent

            rt.publish(ActorEvent("breaker_open", "dspex/clients/x", "x", "test"))
        assert len(state.rows["run-1"]) == MAX_ROWS and len(state.events) == MAX_EVENTS
        assert len(state.breakers) == MAX_EVENTS
        stop()
        rt.publish(RowFinished("run-1", EvalRow(0, example, dspex.Prediction(answer="a"), 1.0)))
        assert len(pushed) == MAX_ROWS * 3 + MAX_EVENTS * 3  # nothing after stop
        state.close()


def test_past_runs_read_only_journals_inside_the_runs_directory(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    (tmp_path / "secret.jsonl").write_text('{"index": 0, "score": 1.0}\n')  # outside the runs directory
    (runs / "garbage.jsonl").write_text("not json at all\n{\n")
    (runs / "deep").mkdir()
    (runs / "deep" / "ok.jsonl").write_text('{"index": 0, "score": 0.5, "cost": 0.0}\n')
    with dspex.runtime("local", cache_dir=tmp_path / "c", log_level="error") as rt:
        board = rt.dashboard(runs_dir=runs)
        session = requests.Session()
        assert session.get(board.url).status_code == 200
        base = board.url.split("?")[0]
        assert [p["name"] for p in session.get(base + "api/past").json()] == ["deep/ok.jsonl"]  # garbage skipped
        for name in ("../secret.jsonl", "..%2Fsecret.jsonl", "%2E%2E/secret.jsonl", "/etc/passwd", "garbage.jsonl"):
            assert session.get(base + "api/past/" + name).status_code == 404, name
        assert session.get(base + "api/past/deep/ok.jsonl").json()["score"] == 50.0


def test_past_runs_skip_a_journal_of_the_wrong_shape_and_list_one_torn_by_a_crash(tmp_path):
    """One bad journal must not take the list down (it answered 500); a run killed mid-write (its last
    line torn inside a multi-byte character) is listed with its readable rows (it vanished)."""
    runs = tmp_path / "runs"
    runs.mkdir()
    row = '{"index": %d, "score": %s, "cost": 0.0}\n'
    (runs / "ok.jsonl").write_text(row % (0, "0.5"))
    (runs / "torn.jsonl").write_bytes((row % (0, "1.0") + row % (1, "0.0")).encode()
                                      + '{"index": 2, "prediction": {"answer": "caf'.encode() + "é".encode()[:1])
    for name, text in {"text.jsonl": row % (0, '"high"'), "null.jsonl": row % (0, "null"),
                       "nan.jsonl": row % (0, "NaN"), "list.jsonl": row % (0, "1.0") + "[1, 2]\n",
                       "late.jsonl": row % (0, "1.0") * 6 + '{"index": 6}\n' + row % (7, "1.0"),
                       "compile.jsonl": '{"kind": "header", "optimizer": "x"}\n{"kind": "candidate", "score": "1"}\n',
                       }.items():
        (runs / name).write_text(text)
    with dspex.runtime("local", cache_dir=tmp_path / "c", log_level="error") as rt:
        board = rt.dashboard(runs_dir=runs)
        session = requests.Session()
        assert session.get(board.url).status_code == 200
        base = board.url.split("?")[0]
        listed = session.get(base + "api/past")
        assert listed.status_code == 200 and [p["name"] for p in listed.json()] == ["ok.jsonl", "torn.jsonl"]
        torn = session.get(base + "api/past/torn.jsonl").json()
        assert torn["examples"] == 2 and [r["index"] for r in torn["rows"]] == [0, 1] and torn["score"] == 50.0
        for name in ("text.jsonl", "null.jsonl", "nan.jsonl", "list.jsonl", "late.jsonl", "compile.jsonl"):
            assert session.get(base + "api/past/" + name).status_code == 404, name


def test_a_past_run_name_with_a_nul_or_too_long_is_not_found(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    with dspex.runtime("local", cache_dir=tmp_path / "c", log_level="error") as rt:
        board = rt.dashboard(runs_dir=runs)
        session = requests.Session()
        assert session.get(board.url).status_code == 200
        base = board.url.split("?")[0]
        for name in ("a%00b.jsonl", "%00", "x" * 5000 + ".jsonl", "ok.txt"):
            assert session.get(base + "api/past/" + name).status_code == 404, name[:20]


@pytest.mark.slow
def test_the_nodes_panel_shows_which_hosts_answer(browser, tmp_path):
    """A tcp leader with two namespace hosts: the panel lists both up; a host stopped (SIGSTOP) shows as
    unreachable within seconds, and up again once it continues. A local runtime says it has no hosts."""
    import signal

    from dspex.testing.netns import Network, NetworkUnavailable

    try:
        net = Network(2)
    except NetworkUnavailable as exc:
        pytest.skip(str(exc))
    with net, dspex.runtime("tcp", bind_host=net.leader_ip, peers=[h.ip for h in net.hosts],
                            cache_dir=tmp_path / "cache", log_level="error") as rt:
        hosts = net.start_dspex_hosts(f"{net.leader_ip}:{rt.actors.admin_port}", 19320)
        deadline = time.monotonic() + 15
        while not set(hosts) <= set(rt.actors.convention_members()):
            assert time.monotonic() < deadline, "the hosts did not join"
            time.sleep(0.1)
        dash = rt.dashboard(runs_dir=tmp_path / "runs")
        page = browser.new_page()
        page.goto(dash.url)

        def state_of(host: str) -> str:
            cell = page.locator(f'#nodes tr[data-node="{host}"] td.status')
            return cell.inner_text() if cell.count() else ""

        def wait_for(host: str, state: str, timeout: float = 15.0) -> None:
            deadline = time.monotonic() + timeout
            while state_of(host) != state:
                assert time.monotonic() < deadline, f"{host}: {state_of(host)!r}, not {state!r}"
                time.sleep(0.1)

        for host in hosts:
            wait_for(host, "up")
        assert f"leader {net.leader_ip}:{rt.actors.admin_port}, 2 joined" in page.locator("#nodes-leader").inner_text()
        stopped = net.pids(1)
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)
        try:
            wait_for(hosts[1], "unreachable")
            assert state_of(hosts[0]) == "up"
            shot(page, "nodes-unreachable")
        finally:
            for pid in stopped:
                os.kill(pid, signal.SIGCONT)
        wait_for(hosts[1], "up")
        page.close()
    with dspex.runtime("local", cache_dir=tmp_path / "c2", log_level="error") as rt:
        page = browser.new_page()
        page.goto(rt.dashboard(runs_dir=tmp_path / "runs").url)
        deadline = time.monotonic() + 10
        while "local runtime: no hosts" not in page.locator("#nodes-leader").inner_text():
            assert time.monotonic() < deadline
            time.sleep(0.1)
        page.close()
