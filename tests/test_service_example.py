"""examples/service: the runtime inside a Starlette app, under a bounded load on loopback while the
simulator injects faults: it keeps answering, rate limits and open breakers are 429 / 503 with
Retry-After, never a 500; the dashboard is mounted under /_dspex; shutdown stops the runtime."""

from __future__ import annotations

import collections
import importlib.util
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

import dspex
from dspex.testing import Faults, ProviderServer
from supervision.tcp import free_port

from tests.dspex.scripted import chat

KEY = "sk-test-service-123456"
APP = Path(__file__).resolve().parents[1] / "examples" / "service" / "app.py"


def load_example():
    spec = importlib.util.spec_from_file_location("service_app", APP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_service_answers_under_load_with_faults_and_maps_them_to_429_and_503(tmp_path):
    import uvicorn

    with dspex.runtime("local", cache_dir=tmp_path / "c", log_level="error"):
        dspex.Predict("question -> answer").save(tmp_path / "program.json")
    faults = Faults(error_rates={500: 0.35, 429: 0.25}, retry_after=0.05, latency=0.01, seed=7)
    with ProviderServer(answer=chat(answer="42"), api_key=KEY, faults=faults) as sim:
        port = free_port()
        app = load_example().create_app(str(tmp_path / "program.json"), "openai/m", sim.base_url(), port,
                                        api_key=KEY, retries=1, cache=False, rpm=None)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + 30
            while not server.started:
                assert time.monotonic() < deadline and thread.is_alive(), "the service did not start"
                time.sleep(0.05)
            url = f"http://127.0.0.1:{port}"

            def ask(i: int) -> requests.Response:
                return requests.post(f"{url}/predict", json={"question": f"q{i}"}, timeout=30)

            with ThreadPoolExecutor(8) as pool:
                answers = list(pool.map(ask, range(160)))
            statuses = collections.Counter(r.status_code for r in answers)
            assert set(statuses) <= {200, 429, 502, 503}, statuses  # never a 500
            assert statuses[200] > 0 and statuses[429] + statuses[503] > 0, statuses
            for r in answers:
                if r.status_code in (429, 503):
                    assert int(r.headers["Retry-After"]) >= 1 and "Traceback" not in r.text
                if r.status_code == 200:
                    assert r.json()["outputs"] == {"answer": "42"}
            assert requests.post(f"{url}/predict", data="not json", timeout=10).status_code == 400
            assert requests.post(f"{url}/predict", json={"nope": 1}, timeout=10).status_code in (200, 400, 502)

            board = requests.Session()
            assert board.get(app.state.dashboard_url, timeout=10).status_code == 200
            state = board.get(f"{url}/_dspex/api/state", timeout=10).json()
            assert state["clients"] and state["clients"][0]["totals"]["requests"] > 0
            assert requests.get(f"{url}/_dspex/api/state", timeout=10).status_code == 403
        finally:
            server.should_exit = True
            thread.join(timeout=30)
        assert not thread.is_alive()
        from dspex.clients.host import open_runtimes

        assert app.state.runtime not in open_runtimes()  # stopped with the app
