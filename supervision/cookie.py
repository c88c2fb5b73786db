"""The cluster cookie: the one secret every process of a runtime (and every host of a cluster) shares.

As Erlang's ``~/.erlang.cookie``: whoever holds it may talk to the actors (and so run code in them: a
message is a pickle); whoever does not is refused before a byte of what it sends is unpickled (see
:mod:`supervision.channel`). Where it comes from, first match wins:

1. ``cookie=`` given to :class:`~supervision.ActorRuntime` / :class:`~supervision.node.Node` (the
   secret itself, or a :class:`Cookie`), or ``cookie_file=`` (``--cookie-file`` on the command line);
2. the environment variable ``DSPEX_COOKIE``, holding the secret itself;
3. the file ``~/.dspex/cookie``, created on first use (32 random bytes, URL-safe text, mode 0600 in
   a 0700 folder). A cookie file that others can read is refused, as ssh refuses such a key.

Hosts of one cluster need the same cookie: copy the leader's file to each host (or set the same
``DSPEX_COOKIE``). The secret is never logged, shown, or pickled: :class:`Cookie` hides it in its repr
and refuses to be pickled; processes forked by the actor system inherit the derived key in memory.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
import tempfile
from pathlib import Path

from .errors import CookieError

COOKIE_ENV = "DSPEX_COOKIE"
DEFAULT_COOKIE_FILE = Path("~/.dspex/cookie")
MIN_LENGTH = 16  # characters: shorter secrets are refused (a guessable cookie is no cookie)
_KEY_LABEL = b"dspex cluster cookie v1"


class Cookie:
    """A cluster secret and where it came from; only :attr:`key` (an HMAC key derived from it) is used."""

    __slots__ = ("_key", "source")

    def __init__(self, secret: str | bytes, source: str = "given") -> None:
        raw = secret.encode() if isinstance(secret, str) else bytes(secret)
        raw = raw.strip()
        if len(raw) < MIN_LENGTH:
            raise CookieError(f"the cluster cookie from {source} is {len(raw)} characters long: use at least "
                              f"{MIN_LENGTH} (e.g. delete {DEFAULT_COOKIE_FILE} to have one made, or copy the "
                              "leader's cookie file to this host)")
        self._key = hmac.digest(_KEY_LABEL, raw, "sha256")
        self.source = source

    @property
    def key(self) -> bytes:
        """The 32-byte HMAC-SHA256 key every connection is authenticated with (not the secret itself)."""
        return self._key

    @property
    def fingerprint(self) -> str:
        """8 hex digits that tell two cookies apart without revealing either (safe to log)."""
        return hashlib.sha256(b"fingerprint" + self._key).hexdigest()[:8]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Cookie) and hmac.compare_digest(self._key, other._key)

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    def __repr__(self) -> str:
        return f"Cookie(<hidden>, fingerprint={self.fingerprint}, from {self.source})"

    def __reduce__(self) -> tuple:
        raise TypeError("a Cookie is not pickled (the cluster secret never travels): give each process the cookie "
                        f"file or {COOKIE_ENV}")


def resolve(cookie: Cookie | str | bytes | None = None, cookie_file: str | os.PathLike | None = None,
            environ: dict | None = None) -> Cookie:
    """The cookie to use, by the order in the module docstring; creates the default file if nothing else is set."""
    if cookie is not None and cookie_file is not None:
        raise CookieError("give either cookie= or cookie_file=, not both")
    if isinstance(cookie, Cookie):
        return cookie
    if cookie is not None:
        return Cookie(cookie, "cookie=")
    if cookie_file is not None:
        return read_file(Path(cookie_file).expanduser(), create=False)
    env = os.environ if environ is None else environ
    if env.get(COOKIE_ENV):
        return Cookie(env[COOKIE_ENV], f"${COOKIE_ENV}")
    return read_file(DEFAULT_COOKIE_FILE.expanduser(), create=True)


def read_file(path: Path, create: bool) -> Cookie:
    """The cookie in ``path``; with ``create``, a new random one written there first if the file is missing."""
    if create and not path.exists():
        _create(path)
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise CookieError(f"the cookie file {path} can be read by others (mode {stat.S_IMODE(mode):o}): "
                              f"run `chmod 600 {path}`")
        return Cookie(path.read_bytes(), str(path))
    except FileNotFoundError:
        raise CookieError(f"no cookie file at {path}: copy the leader's cookie file there (mode 600), set "
                          f"{COOKIE_ENV}, or leave both out to use {DEFAULT_COOKIE_FILE}") from None
    except PermissionError as exc:
        raise CookieError(f"the cookie file {path} cannot be read ({exc.strerror})") from None


def _create(path: Path) -> None:
    """Write a fresh secret, readable by its owner only. Written aside, then linked into place (atomic, and
    never over an existing file): a process racing to make it reads either no file or the whole secret."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, aside = tempfile.mkstemp(prefix=".cookie-", dir=path.parent)  # mode 0600
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(32) + "\n")
            try:
                os.link(aside, path)
            except FileExistsError:  # another process made it first: theirs is the cookie
                pass
        finally:
            os.unlink(aside)
    except OSError as exc:
        raise CookieError(f"cannot make the cookie file {path} ({exc.strerror or exc}): set {COOKIE_ENV}, or give "
                          "cookie_file= / --cookie-file a file you may write") from None
