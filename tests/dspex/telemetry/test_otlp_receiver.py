"""Traces in a real OTLP receiver: Arize Phoenix, started by the test on 127.0.0.1, stores what dspex sends
over OTLP/HTTP; the test reads the stored trace tree back through Phoenix's REST API.

Phoenix, not MLflow's tracking server: both install from PyPI at about the same size (~0.85 GB, so each
lives in a venv of its own, ``.venv-phoenix``, made by ``./run``), but Phoenix stores OTLP spans with no
experiment to create first, serves them back with their parent ids over plain REST, and starts in
seconds; it is also what DSPy users reach for through OpenInference."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

pytest.importorskip("opentelemetry.exporter.otlp.proto.http")

import dspex  # noqa: E402
import dspex.telemetry  # noqa: E402
from dspex.testing import ProviderServer  # noqa: E402

from ..scripted import chat  # noqa: E402

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]
PHOENIX = ROOT / ".venv-phoenix" / "bin" / "phoenix"
KEY = "sk-otlp-receiver-secret-55555"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


@contextmanager
def phoenix_server(work: Path, host: str = "127.0.0.1") -> Iterator[str]:
    """Phoenix serving on ``host`` (its data in ``work``), until the block ends: its URL."""
    if not PHOENIX.exists():
        pytest.skip(f"the OTLP receiver is not installed ({PHOENIX}): `./run test` installs it")
    port = _free_port()
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(work), "PHOENIX_WORKING_DIR": str(work),
           "PHOENIX_HOST": host, "PHOENIX_PORT": str(port), "PHOENIX_GRPC_PORT": str(_free_port()),
           "PHOENIX_TELEMETRY_ENABLED": "false", "PHOENIX_SQL_DATABASE_ECHO": "false"}
    with open(work / "phoenix.log", "wb") as log:
        proc = subprocess.Popen([str(PHOENIX), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://{host}:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/healthz", timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"phoenix did not start: {(work / 'phoenix.log').read_text()[-2000:]}")
                time.sleep(0.25)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory):
    with phoenix_server(tmp_path_factory.mktemp("phoenix")) as url:
        yield url


def stored(url: str, project: str, expect: int, timeout: float = 30.0) -> list[dict]:
    """The spans Phoenix stored for ``project``, once at least ``expect`` are in."""
    deadline = time.monotonic() + timeout
    while True:
        spans, cursor = [], None
        try:
            while True:
                page = _get(f"{url}/v1/projects/{project}/spans?limit=1000" + (f"&cursor={cursor}" if cursor else ""))
                spans += page["data"]
                cursor = page.get("next_cursor")
                if not cursor:
                    break
        except urllib.error.HTTPError as exc:  # the project exists once its first span is in
            if exc.code != 404:
                raise
        if len(spans) >= expect or time.monotonic() > deadline:
            return spans
        time.sleep(0.25)


def answer(req):
    question = req.last_user.split("[[ ## question ## ]]\n")[-1].split("\n")[0]
    return chat(answer=question.upper())


def exact(example, pred, trace=None):
    return example.answer == pred.answer


@pytest.fixture
def traced(phoenix, monkeypatch, request):
    """Spans of this test go to their own Phoenix project (by the standard resource variable, which the
    runtime's processes inherit), exported by the provider dspex builds from the standard endpoint."""
    project = request.node.name.replace("_", "-")[:60]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", phoenix)
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", f"openinference.project.name={project}")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "200")
    monkeypatch.setenv("OPENAI_API_KEY", KEY)  # worker processes read their key from the environment
    yield project
    dspex.telemetry.uninstrument()


def test_an_evaluation_on_worker_processes_is_one_stored_trace(phoenix, traced, tmp_path):
    n = 12
    with ProviderServer(answer=answer, api_key=KEY) as server, \
            dspex.runtime("multiproc", cache_dir=tmp_path, log_level=None):
        dspex.telemetry.instrument()
        lm = dspex.LM("openai/stored", api_key=KEY, base_url=server.base_url(), cache=False)
        devset = [dspex.Example(question=f"q{i}", answer=f"Q{i}").with_inputs("question") for i in range(n)]
        result = dspex.Evaluate(devset, exact, max_concurrency=4, workers=2, progress=False).run(
            dspex.Predict("question -> answer", lm=lm))
        assert result.score == 100.0 and {r.worker for r in result.rows} <= {"worker-1", "worker-2"}
        dspex.telemetry.uninstrument()  # the parent's spans are exported now; the workers flushed theirs
        spans = stored(phoenix, traced, expect=1 + n * 5)
    by_id = {s["context"]["span_id"]: s for s in spans}
    (root,) = [s for s in spans if s["name"] == "Evaluate"]
    assert root["parent_id"] is None and {s["context"]["trace_id"] for s in spans} == {root["context"]["trace_id"]}
    rows = [s for s in spans if s["name"].startswith("evaluate row ")]
    assert sorted(int(r["attributes"]["dspex.row.index"]) for r in rows) == list(range(n))
    assert all(r["parent_id"] == root["context"]["span_id"] for r in rows)  # across the process boundary
    assert {r["attributes"]["dspex.row.worker"] for r in rows} <= {"worker-1", "worker-2"}
    lm_spans = [s for s in spans if s["name"] == "chat stored"]
    assert len(lm_spans) == n
    for span in lm_spans:  # chat <- Predict.forward <- evaluate row <- Evaluate
        chain = [span]
        while chain[-1]["parent_id"] is not None:
            chain.append(by_id[chain[-1]["parent_id"]])
        assert [s["name"].split(" ")[0] for s in chain] == ["chat", "Predict.forward", "evaluate", "Evaluate"]
        assert span["attributes"]["gen_ai.system"] == "openai"
        assert span["attributes"]["gen_ai.request.model"] == "stored"
        assert int(span["attributes"]["gen_ai.usage.input_tokens"]) > 0
    assert KEY not in json.dumps(spans)


def test_a_compile_with_captured_messages_is_stored_with_its_steps(phoenix, traced, tmp_path):
    with ProviderServer(answer=answer, api_key=KEY) as server, dspex.runtime("local", cache_dir=tmp_path, log_level=None):
        dspex.telemetry.instrument(capture_messages=True)
        lm = dspex.LM("openai/stored", api_key=KEY, base_url=server.base_url(), cache=False)
        trainset = [dspex.Example(question=f"t{i}", answer=f"T{i}").with_inputs("question") for i in range(3)]
        with dspex.context(lm=lm):
            dspex.BootstrapFewShot(metric=exact, max_bootstrapped_demos=2).compile(
                dspex.Predict("question -> answer"), trainset=trainset)
        dspex.telemetry.uninstrument()
        spans = stored(phoenix, traced, expect=10)
    (root,) = [s for s in spans if s["name"] == "BootstrapFewShot.compile"]
    steps = [s for s in spans if s["parent_id"] == root["context"]["span_id"]]
    assert steps and all(s["name"] == "compile step bootstrap" for s in steps)
    lm_span = next(s for s in spans if s["name"] == "chat stored")
    assert "[[ ## question ## ]]" in lm_span["attributes"]["gen_ai.input.messages"]
    assert "[[ ## answer ## ]]" in lm_span["attributes"]["output.value"]
    assert KEY not in json.dumps(spans)


def lineage(span: dict, by_id: dict) -> list[str]:
    """The first words of the names from ``span`` up to its root."""
    chain = [span]
    while chain[-1]["parent_id"] is not None:
        chain.append(by_id[chain[-1]["parent_id"]])
    return [s["name"].split(" ")[0] for s in chain]


@pytest.mark.multihost
def test_an_evaluation_over_hosts_is_one_stored_trace(tmp_path, monkeypatch):
    """Rows run on two hosts in network namespaces: their spans, exported by each host to the receiver on
    the leader's bridge, hang under the leader's Evaluate span (the trace context went with the work)."""
    from dspex.testing.netns import Network

    n = 16
    (tmp_path / "phoenix").mkdir()
    with Network(2) as net, phoenix_server(tmp_path / "phoenix", host=net.leader_ip) as url, \
            ProviderServer(answer=answer, api_key=KEY, host=net.leader_ip) as server, \
            dspex.runtime("tcp", bind_host=net.leader_ip, peers=[h.ip for h in net.hosts], cache_dir=tmp_path,
                          log_level=None) as rt:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)  # the hosts inherit it (their own export)
        monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "openinference.project.name=hosts")
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "200")
        hosts = net.start_dspex_hosts(f"{net.leader_ip}:{rt.actors.admin_port}", 19350, {"OPENAI_API_KEY": KEY})
        try:
            dspex.telemetry.instrument()
            lm = dspex.LM("openai/stored", api_key=KEY, base_url=server.base_url(), cache=False)
            devset = [dspex.Example(question=f"q{i}", answer=f"Q{i}").with_inputs("question") for i in range(n)]
            result = dspex.Evaluate(devset, exact, max_concurrency=4, workers=1, progress=False).run_distributed(
                dspex.Predict("question -> answer", lm=lm), hosts)
        finally:
            dspex.telemetry.uninstrument()
        assert result.score == 100.0
        spans = stored(url, "hosts", expect=1 + n * 5)
    by_id = {s["context"]["span_id"]: s for s in spans}
    (root,) = [s for s in spans if s["name"] == "Evaluate"]
    rows = [s for s in spans if s["name"].startswith("evaluate row ")]
    assert len(rows) == n and all(r["parent_id"] == root["context"]["span_id"] for r in rows)
    assert {r["attributes"]["dspex.row.worker"].split("@")[1] for r in rows} == set(hosts)
    chats = [s for s in spans if s["name"] == "chat stored"]
    assert len(chats) == n and all(lineage(c, by_id) == ["chat", "Predict.forward", "evaluate", "Evaluate"]
                                   for c in chats)
    assert KEY not in json.dumps(spans)
