"""API keys for the prediction service: token files, scopes, per-key rate limits.

Layout under ``<data_dir>/auth/`` (directory 0700, files 0600; a wider mode refuses to start):

- ``api_token``: the owner's raw token (created on first start; every scope). Clients read it
  (:func:`client_token`); ``stockray auth rotate`` replaces it.
- ``keys.yaml`` (optional): more named keys, stored as SHA-256 hashes only::

      keys:
        dashboard: {sha256: <hex>, scopes: [predict], rate_per_s: 20, burst: 40}

  ``stockray auth add-key NAME --scope predict`` appends one and prints its token once.

A request presents ``authorization: Bearer <token>`` (gRPC metadata or HTTP header). Tokens are
32 random bytes, so one SHA-256 is enough (no password KDF: nothing to brute-force), and the
presented hash is compared with *every* stored hash by ``hmac.compare_digest`` (constant time,
no early exit). A token never reaches a log or the audit file: only the key *name* does.
The files are re-read when their mtime changes (checked at most every ``reload_s``), so a
rotation or a new key takes effect on running replicas without a restart.
Rate limits are token buckets per key and per replica process (N replicas allow N x the rate).
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import os
import secrets
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, Field

from features.durable import atomic_write_text
from serving.errors import PermissionDeniedError, RateLimitedError, UnauthenticatedError

SCOPES = ("predict", "explain", "admin")
TOKEN_ENV = "STOCKRAY_API_TOKEN"
AUTH_DIR_ENV = "STOCKRAY_AUTH_DIR"
TOKEN_FILE = "api_token"
KEYS_FILE = "keys.yaml"
OWNER_KEY = "owner"  # the name of the key in api_token
# The key name of the request being served (for the audit log); never the token.
CURRENT_KEY: contextvars.ContextVar[str] = contextvars.ContextVar("stockray_key", default="")
# Whether the request's key holds the Explain scope: without it, Predict's top-k contributions
# are capped (serving.service), so `Predict(explain, top_k=1024)` is no back door to the full
# attribution. True when auth is off.
FULL_EXPLAIN: contextvars.ContextVar[bool] = contextvars.ContextVar("stockray_full_explain",
                                                                    default=True)


class AuthSetupError(RuntimeError):
    """The auth files are unsafe or unreadable: the server refuses to start."""


class AccessConfig(BaseModel):
    """Who may call what (crosses the process boundary inside ``StageConfig``).

    ``profile="production"`` turns reflection off and makes ``Explain`` (full attribution) and
    ``ListModels`` (the feature set) admin-only unless the fields below say otherwise.
    """

    auth: bool = Field(True, description="Require a Bearer token (health stays open).")
    auth_dir: str | None = Field(
        None, description="Key files; None = $STOCKRAY_AUTH_DIR or <data_dir>/auth (launcher)."
    )
    profile: Literal["dev", "production"] = Field("dev", description="Defaults below.")
    reflection: bool | None = Field(None, description="gRPC reflection (None: dev on).")
    explain_scope: str | None = Field(
        None, description="Scope of Explain (full attribution); None: dev explain, prod admin."
    )
    models_scope: str | None = Field(
        None, description="Scope of ListModels; None: dev predict, production admin."
    )
    default_rate_per_s: float = Field(
        0.0, ge=0, description="Rate limit of keys that set none, per replica (0 = none)."
    )
    max_request_bytes: int = Field(
        64 * 1024, ge=1024, description="Largest gRPC message / HTTP body accepted."
    )
    reload_s: float = Field(1.0, ge=0, description="How often key files are checked.")

    def reflection_on(self) -> bool:
        return self.profile == "dev" if self.reflection is None else self.reflection

    def scope_of(self, rpc: str) -> str:
        """The scope an RPC needs (``Predict``/``PredictBatch``: predict)."""
        prod = self.profile == "production"
        if rpc == "Explain":
            return self.explain_scope or ("admin" if prod else "explain")
        if rpc == "ListModels":
            return self.models_scope or ("admin" if prod else "predict")
        return "predict"


def default_auth_dir() -> Path:
    """``$STOCKRAY_AUTH_DIR``, else ``<$STOCKRAY_DATA_DIR or ./data>/auth`` (absolute)."""
    from features.settings import Settings

    return Settings().resolved().auth_path


def new_token() -> str:
    return "sr_" + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _check_mode(path: Path, dir_: bool = False) -> None:
    st = path.stat()
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise AuthSetupError(
            f"{path} has mode {stat.S_IMODE(st.st_mode):04o}: group/other may read it; "
            f"run `chmod {'700' if dir_ else '600'} {path}` (refusing to start)"
        )


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 via a temp file + rename (never world-readable)."""
    atomic_write_text(path, text, mode=0o600)


def ensure_auth_dir(auth_dir: str | os.PathLike[str]) -> Path:
    """Create ``auth_dir`` (0700) and ``api_token`` (0600) if missing; check every mode.

    Returns the token file. Raises :class:`AuthSetupError` when a mode is wider.
    """
    d = Path(auth_dir)
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    _check_mode(d, dir_=True)
    tok = d / TOKEN_FILE
    if not tok.exists():
        _write_private(tok, new_token() + "\n")
    _check_mode(tok)
    if (d / KEYS_FILE).exists():
        _check_mode(d / KEYS_FILE)
    return tok


def rotate_token(auth_dir: str | os.PathLike[str]) -> Path:
    """Replace ``api_token`` with a new one (running replicas pick it up within reload_s)."""
    d = Path(auth_dir)
    ensure_auth_dir(d)
    _write_private(d / TOKEN_FILE, new_token() + "\n")
    return d / TOKEN_FILE


def add_key(
    auth_dir: str | os.PathLike[str],
    name: str,
    scopes: list[str],
    rate_per_s: float = 0.0,
    burst: int = 0,
) -> str:
    """Add (or replace) a named key in ``keys.yaml``; returns its token (shown once)."""
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        raise ValueError(f"scopes must be some of {SCOPES}, got {scopes}")
    if not name.replace("-", "").replace("_", "").isalnum() or name == OWNER_KEY:
        raise ValueError(f"key name {name!r}: letters, digits, '-', '_' (not {OWNER_KEY!r})")
    d = Path(auth_dir)
    ensure_auth_dir(d)
    path = d / KEYS_FILE
    doc = yaml.safe_load(path.read_text()) if path.exists() else None
    keys = (doc or {}).get("keys") or {}
    token = new_token()
    keys[name] = {"sha256": token_hash(token), "scopes": list(scopes), "rate_per_s": rate_per_s,
                  "burst": burst}
    _write_private(path, yaml.safe_dump({"keys": keys}, sort_keys=True))
    return token


def remove_key(auth_dir: str | os.PathLike[str], name: str) -> bool:
    path = Path(auth_dir) / KEYS_FILE
    if not path.exists():
        return False
    keys = (yaml.safe_load(path.read_text()) or {}).get("keys") or {}
    found = keys.pop(name, None) is not None
    _write_private(path, yaml.safe_dump({"keys": keys}, sort_keys=True))
    return found


def client_token(auth_dir: str | os.PathLike[str] | None = None) -> str | None:
    """The token a client sends: ``$STOCKRAY_API_TOKEN``, else the ``api_token`` file, else None."""
    env = os.environ.get(TOKEN_ENV)
    if env:
        return env.strip()
    path = Path(auth_dir) if auth_dir is not None else default_auth_dir()
    try:
        return (path / TOKEN_FILE).read_text().strip() or None
    except OSError:
        return None


@dataclass
class Key:
    name: str
    digest: bytes
    scopes: frozenset[str]
    rate_per_s: float = 0.0
    burst: float = 0.0
    _tokens: float = field(default=0.0, repr=False)
    _at: float = field(default=0.0, repr=False)


def bearer(value: str | None) -> str | None:
    """The token of an ``authorization`` value (``Bearer <token>``), else None."""
    if not value:
        return None
    scheme, _, tok = value.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return tok.strip() or None


class Authenticator:
    """Checks a request's token, scope and rate (thread-safe; one per replica)."""

    def __init__(self, auth_dir: str | os.PathLike[str], *, default_rate_per_s: float = 0.0,
                 reload_s: float = 1.0, clock=time.monotonic) -> None:
        self.dir = Path(auth_dir)
        self._default_rate = default_rate_per_s
        self._reload_s = reload_s
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: list[Key] = []
        self._stamp: tuple = ()
        self._checked = -1e18
        ensure_auth_dir(self.dir)
        self._maybe_reload(force=True)

    def _file_stamp(self) -> tuple:
        out = []
        for name in (TOKEN_FILE, KEYS_FILE):
            try:
                st = (self.dir / name).stat()
                out.append((st.st_mtime_ns, st.st_size, st.st_ino))
            except FileNotFoundError:
                out.append(None)
        return tuple(out)

    def _maybe_reload(self, force: bool = False) -> None:
        now = self._clock()
        if not force and now - self._checked < self._reload_s:
            return
        self._checked = now
        stamp = self._file_stamp()
        if stamp == self._stamp and not force:
            return
        _check_mode(self.dir / TOKEN_FILE)
        owner = (self.dir / TOKEN_FILE).read_text().strip()
        keys = {OWNER_KEY: Key(OWNER_KEY, bytes.fromhex(token_hash(owner)), frozenset(SCOPES),
                               self._default_rate, 2 * self._default_rate)}
        path = self.dir / KEYS_FILE
        if path.exists():
            _check_mode(path)
            for name, k in ((yaml.safe_load(path.read_text()) or {}).get("keys") or {}).items():
                rate = float(k.get("rate_per_s") or self._default_rate)
                keys[str(name)] = Key(str(name), bytes.fromhex(k["sha256"]),
                                      frozenset(k.get("scopes") or ()), rate,
                                      float(k.get("burst") or 2 * rate))
        old = {k.name: k for k in self._keys}
        for k in keys.values():  # keep bucket state across reloads
            if k.name in old:
                k._tokens, k._at = old[k.name]._tokens, old[k.name]._at
            else:
                k._tokens, k._at = k.burst, now
        self._keys, self._stamp = list(keys.values()), stamp

    def _find(self, token: str) -> Key | None:
        digest = hashlib.sha256(token.encode()).digest()
        found = None
        for k in self._keys:  # no early exit: time does not depend on which key matched
            if hmac.compare_digest(digest, k.digest):
                found = k
        return found

    def has_scope(self, name: str, scope: str) -> bool:
        key = next((k for k in self._keys if k.name == name), None)
        return key is not None and (scope in key.scopes or "admin" in key.scopes)

    def check(self, authorization: str | None, scope: str) -> str:
        """Return the key name, or raise Unauthenticated / PermissionDenied / RateLimited."""
        token = bearer(authorization)
        if token is None:
            raise UnauthenticatedError(
                "missing token: send 'authorization: Bearer <token>' (the token is in "
                "<data_dir>/auth/api_token, or ask the operator for a key)"
            )
        with self._lock:
            self._maybe_reload()
            key = self._find(token)
            if key is None:
                raise UnauthenticatedError(
                    "invalid token: check <data_dir>/auth/api_token or $STOCKRAY_API_TOKEN "
                    "(rotated keys stop working at once)"
                )
            if scope not in key.scopes and "admin" not in key.scopes:
                raise PermissionDeniedError(
                    f"key {key.name!r} lacks scope {scope!r} (has {sorted(key.scopes)}): ask "
                    "the operator for a key with that scope"
                )
            if key.rate_per_s > 0:
                now = self._clock()
                key._tokens = min(key.burst, key._tokens + (now - key._at) * key.rate_per_s)
                key._at = now
                if key._tokens < 1.0:
                    wait = (1.0 - key._tokens) / key.rate_per_s
                    raise RateLimitedError(
                        f"key {key.name!r} is over its rate limit ({key.rate_per_s:g}/s, burst "
                        f"{key.burst:g}): retry after {wait:.2f} s with backoff",
                        retry_after_s=wait,
                    )
                key._tokens -= 1.0
        return key.name


def build_authenticator(cfg: AccessConfig) -> Authenticator | None:
    """The replica's authenticator (None when auth is off)."""
    if not cfg.auth:
        return None
    return Authenticator(cfg.auth_dir or default_auth_dir(),
                         default_rate_per_s=cfg.default_rate_per_s, reload_s=cfg.reload_s)


class Gate:
    """What every transport calls first: scope check, rate limit, and an audit record of a
    refusal (the request never reaches the service). With auth off it only tags the key."""

    def __init__(self, access: AccessConfig, audit=None) -> None:
        self.access = access
        self.auth = build_authenticator(access)
        self._audit = audit  # serving.audit.AuditLog | None

    def admit(self, rpc: str, authorization: str | None) -> str:
        """Key name of an admitted request (also set in :data:`CURRENT_KEY`), or raise."""
        if self.auth is None:
            CURRENT_KEY.set("-")
            return "-"
        try:
            name = self.auth.check(authorization, self.access.scope_of(rpc))
        except Exception as e:
            self.record_refusal(rpc, e)
            raise
        CURRENT_KEY.set(name)
        FULL_EXPLAIN.set(self.auth.has_scope(name, self.access.scope_of("Explain")))
        return name

    def record_refusal(self, rpc: str, exc: Exception) -> None:
        if self._audit is None:
            return
        from serving.errors import status_of

        code, message, _ = status_of(exc)
        try:
            self._audit.append({"ts": time.time(), "request_id": secrets.token_hex(16),
                                "rpc": rpc, "key": "", "error": {"code": code.name,
                                                                 "message": message}})
        except OSError:
            pass  # never fail a request because of the log (the service logs the same way)


# The replica's gate for its HTTP middleware. Kept here, not in the ingress module: Serve
# pickles the Ingress class *by value* (its module attribute is the Deployment, not the class),
# so a `global` assigned in its __init__ lands in a copy of that module's globals, while the
# middleware (pickled by reference) reads the real module. Functions of this module are pickled
# by reference on both sides.
_REPLICA_GATE: Gate | None = None


def set_replica_gate(gate: Gate) -> None:
    global _REPLICA_GATE
    _REPLICA_GATE = gate


def replica_gate() -> Gate | None:
    return _REPLICA_GATE
