"""Workload identity: a verified token or certificate becomes a registered agent.

The contract: an authenticator takes the proof of identity an agent presents
and returns the :class:`~agentauthz.model.Entity` of a **registered, active**
agent (``agent:support-bot``), or raises :class:`~agentauthz.errors.Unauthenticated`
with a message that says what failed. There is no third outcome: whatever
cannot be verified is rejected, and a proof for one agent can only ever name
that agent.

:class:`JWTAuthenticator` verifies OIDC tokens and JWT-SVIDs. Verified here:

* the signature, with a public key chosen by the token's ``kid`` among the
  keys the application configured, for an algorithm on the allowlist that
  fits that key's type (``none`` and the symmetric ``HS*`` algorithms are
  refused at construction: with public keys they are the key-confusion attack);
* the claims ``iss`` (one of the configured issuers), ``aud`` (one of the
  configured audiences), ``exp`` with leeway, ``iat`` or ``nbf`` (at least
  one, so that the lifetime is bounded) and a lifetime of at most
  ``max_lifetime``, all against the injected clock;
* the subject: a ``spiffe://`` id (its trust domain, when one is configured,
  and the registry's SPIFFE mapping) or an agent id (``support-bot`` or
  ``agent:support-bot``); then the registry's status gate.

:class:`SpiffeAuthenticator` maps the SPIFFE id of a peer's X.509-SVID,
presented over mutual TLS, to a registered agent.

What this module deliberately does not do:

* fetch keys over the network. The application passes the JWKS document (or
  a file holding it) and builds a new authenticator when keys rotate; keys
  named by the token itself (``jku``, ``x5u``, ``jwk``, ``x5c`` headers) are
  never used.
* verify X.509 certificate chains. That is the TLS layer's job (``ssl`` with
  ``CERT_REQUIRED`` and the trust bundle); only the verified peer
  certificate's URI SAN is read here.
* remember tokens (``jti`` replay detection) or ask an issuer whether a token
  was revoked: keep lifetimes short instead (``max_lifetime``) and suspend
  the agent in the registry, which takes effect on its next request.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final, NoReturn

from agentauthz.errors import ConfigurationError, Unauthenticated
from agentauthz.model import Entity

if TYPE_CHECKING:
    from agentauthz.agents.registry import AgentRegistry

__all__ = ["JWTAuthenticator", "SpiffeAuthenticator"]

log = logging.getLogger("agentauthz.identity")

MAX_TOKEN_LENGTH: Final = 16 * 1024
"""Longer bearer tokens are rejected before any parsing."""
MAX_SPIFFE_ID_LENGTH: Final = 2048
"""The SPIFFE-ID spec's limit on a SPIFFE id, in bytes."""

_TOKEN_SHAPE: Final = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_TRUST_DOMAIN: Final = re.compile(r"[a-z0-9._-]{1,255}")
_PATH_SEGMENT: Final = re.compile(r"[A-Za-z0-9._-]+")

_RSA_ALGORITHMS: Final = frozenset(("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"))
_EC_ALGORITHMS: Final = {  # by cryptography's curve name; ES521 is PyJWT's alias of ES512
    "secp256r1": frozenset(("ES256",)),
    "secp384r1": frozenset(("ES384",)),
    "secp521r1": frozenset(("ES512", "ES521")),
    "secp256k1": frozenset(("ES256K",)),
}
_MIN_RSA_BITS: Final = 2048
_PRIVATE_JWK_MEMBERS: Final = ("d", "p", "q", "dp", "dq", "qi", "oth")
_JWT_HINT: Final = "JWTAuthenticator needs PyJWT: pip install 'agentauthz[jwt]'"


def _reject(message: str) -> NoReturn:
    raise Unauthenticated(None, message)


def _clip(text: str, limit: int = 128) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


# ------------------------------------------------------------------ SPIFFE ids
def _trust_domain_problem(name: str) -> str | None:
    if _TRUST_DOMAIN.fullmatch(name):
        return None
    if not name:
        return "has no trust domain"
    if len(name) > 255:
        return "has a trust domain longer than 255 characters"
    if "@" in name:
        return "must not carry user info ('user@') in its trust domain"
    if ":" in name:
        return "must not carry a port in its trust domain"
    if "?" in name or "#" in name:
        return "must not carry a query or a fragment"
    return ("has a trust domain that holds characters other than lowercase letters, digits, "
            "'.', '-' and '_'")


def _spiffe_problem(text: str) -> str | None:
    """What makes ``text`` no SPIFFE id of a workload, per the SPIFFE-ID spec; None if nothing."""
    if not text:
        return "is empty"
    if len(text) > MAX_SPIFFE_ID_LENGTH:
        return f"is longer than {MAX_SPIFFE_ID_LENGTH} bytes"
    if not text.isascii():
        return "holds non-ASCII characters"
    if not text.startswith("spiffe://"):
        return "does not start with 'spiffe://' (the scheme is lowercase 'spiffe')"
    trust_domain, slash, path = text[len("spiffe://"):].partition("/")
    problem = _trust_domain_problem(trust_domain)
    if problem is not None:
        return problem
    if not slash:
        return "names a trust domain, not a workload: it has no path"
    if "?" in path or "#" in path:
        return "must not carry a query or a fragment"
    for segment in path.split("/"):
        if not segment:
            return "has an empty path segment ('//' or a trailing '/')"
        if segment in (".", ".."):
            return "has a '.' or '..' path segment"
        if not _PATH_SEGMENT.fullmatch(segment):
            return "has a path segment with characters other than letters, digits, '.', '-' and '_'"
    return None


def _check_trust_domain(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise ConfigurationError(f"{field}: expected a trust domain name such as 'example.org', "
                                 f"got {type(value).__name__}")
    if value.startswith("spiffe://"):
        raise ConfigurationError(f"{field}: pass the trust domain name ('example.org'), not a "
                                 f"SPIFFE id ({_clip(value)})")
    problem = _trust_domain_problem(value)
    if problem is not None:
        raise ConfigurationError(f"{field}: {_clip(value)} is not a SPIFFE trust domain: it "
                                 f"{problem}")
    return value


# ------------------------------------------------------- from identity to agent
def _active_agent(registry: AgentRegistry, key: str) -> Entity:
    reason = registry.gate(key)
    if reason is not None:
        _reject(f"{reason.message} [{reason.kind}]")
    return Entity.parse(key)


def _spiffe_agent(registry: AgentRegistry, spiffe_id: object, trust_domain: str | None,
                  what: str) -> Entity:
    if not isinstance(spiffe_id, str):
        _reject(f"{what}: a SPIFFE id is a string, got {type(spiffe_id).__name__}")
    problem = _spiffe_problem(spiffe_id)
    if problem is not None:
        _reject(f"{what}: {_clip(spiffe_id, 64)} is not a SPIFFE id: it {problem}")
    domain = spiffe_id[len("spiffe://"):].partition("/")[0]
    if trust_domain is not None and domain != trust_domain:
        _reject(f"{what}: SPIFFE id {_clip(spiffe_id)} is in trust domain {domain!r}, "
                f"not {trust_domain!r}")
    record = registry.by_spiffe_id(spiffe_id)
    if record is None:
        _reject(f"{what}: SPIFFE id {_clip(spiffe_id)} names no registered agent; "
                "unregistered agents are denied")
    return _active_agent(registry, record.id)


# ---------------------------------------------------------------------- JWT keys
@dataclass(frozen=True, slots=True)
class _Key:
    kid: str | None
    key: Any
    """A cryptography public key."""
    algorithms: frozenset[str]
    """The allowed algorithms this key may verify: its type's, narrowed by its JWK ``alg``."""
    kind: str


def _key_algorithms(key: object, where: str) -> tuple[str, frozenset[str]]:
    """``(kind, algorithms)`` of a public key; ConfigurationError for anything else."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
                  | ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        raise ConfigurationError(f"{where}: this is a private key; configure only its public key "
                                 "(private_key.public_key()): a verifier never needs the private one")
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < _MIN_RSA_BITS:
            raise ConfigurationError(f"{where}: a {key.key_size}-bit RSA key is too weak; use at "
                                     f"least {_MIN_RSA_BITS} bits")
        return f"RSA-{key.key_size}", _RSA_ALGORITHMS
    if isinstance(key, ec.EllipticCurvePublicKey):
        algorithms = _EC_ALGORITHMS.get(key.curve.name)
        if algorithms is None:
            raise ConfigurationError(f"{where}: EC curve {key.curve.name!r} has no JWS algorithm; "
                                     "use P-256, P-384 or P-521")
        return f"EC {key.curve.name}", algorithms
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", frozenset(("EdDSA",))
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448", frozenset(("EdDSA",))
    raise ConfigurationError(f"{where}: expected an RSA, EC or Ed25519/Ed448 public key, got "
                             f"{type(key).__name__}")


def _make_key(public: object, kid: str | None, alg: str | None, where: str) -> _Key:
    kind, algorithms = _key_algorithms(public, where)
    if alg is not None:
        if alg not in algorithms:
            raise ConfigurationError(f"{where}: its 'alg' {alg!r} does not fit an {kind} key "
                                     f"(that key verifies {', '.join(sorted(algorithms))})")
        algorithms = frozenset((alg,))
    return _Key(kid, public, algorithms, kind)


def _jwk_key(jwk: object, where: str) -> _Key:
    from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
    from jwt.exceptions import PyJWTError

    if not isinstance(jwk, Mapping):
        raise ConfigurationError(f"{where}: a JWK is a JSON object, got {type(jwk).__name__}")
    kty = jwk.get("kty")
    if kty == "oct":
        raise ConfigurationError(f"{where}: symmetric keys (kty 'oct') are refused: agentauthz "
                                 "verifies public-key signatures only; publish the issuer's "
                                 "public key instead")
    loaders = {"RSA": RSAAlgorithm.from_jwk, "EC": ECAlgorithm.from_jwk,
               "OKP": OKPAlgorithm.from_jwk}
    if not isinstance(kty, str) or kty not in loaders:
        raise ConfigurationError(f"{where}: 'kty' must be 'RSA', 'EC' or 'OKP', got {kty!r}")
    private = [m for m in _PRIVATE_JWK_MEMBERS if m in jwk]
    if private:
        raise ConfigurationError(f"{where}: holds private key material "
                                 f"({', '.join(repr(m) for m in private)}); configure only the "
                                 "public key")
    kid, alg = jwk.get("kid"), jwk.get("alg")
    if kid is not None and not isinstance(kid, str):
        raise ConfigurationError(f"{where}: 'kid' must be a string, got {type(kid).__name__}")
    if alg is not None and not isinstance(alg, str):
        raise ConfigurationError(f"{where}: 'alg' must be a string, got {type(alg).__name__}")
    try:
        public = loaders[kty](json.dumps(dict(jwk)))
    except (PyJWTError, ValueError, KeyError, TypeError) as exc:
        raise ConfigurationError(f"{where}: not a valid {kty} public key ({exc})") from exc
    return _make_key(public, kid, alg, where)


def _configured_key(key: object) -> _Key:
    if isinstance(key, Mapping):
        return _jwk_key(key, "key")
    if isinstance(key, str | bytes):
        from cryptography import x509
        from cryptography.exceptions import UnsupportedAlgorithm
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        data = key.encode() if isinstance(key, str) else key
        if b"-----BEGIN " not in data:
            raise ConfigurationError("key: expected a PEM public key ('-----BEGIN PUBLIC KEY-----'), "
                                     "a PEM certificate, a cryptography public key or a JWK dict; "
                                     "shared secrets are refused (no HS* algorithms)")
        if b"PRIVATE KEY-----" in data:
            raise ConfigurationError("key: this PEM holds a private key; configure only its public "
                                     "key: a verifier never needs the private one")
        try:
            if b"-----BEGIN CERTIFICATE-----" in data:
                public: object = x509.load_pem_x509_certificate(data).public_key()
            else:
                public = load_pem_public_key(data)
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise ConfigurationError(f"key: the PEM could not be read ({exc})") from exc
        return _make_key(public, None, None, "key")
    return _make_key(key, None, None, "key")


def _read_jwks(jwks: Mapping[str, Any] | str | os.PathLike[str]) -> tuple[object, str]:
    """The JWKS document and how to name it in errors."""
    if isinstance(jwks, Mapping):
        return jwks, "jwks"
    if not isinstance(jwks, str | os.PathLike):
        raise ConfigurationError("jwks: expected a JWKS document (a dict with a 'keys' list) or "
                                 f"the path of a JSON file, got {type(jwks).__name__}")
    path = os.fspath(jwks)
    where = f"jwks file {path!r}"
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError as exc:
        hint = ("a str is read as a file path: pass the parsed document (json.loads(text))"
                if path.lstrip().startswith("{") else
                "pass the JWKS document (a dict) or the path of a JSON file holding it")
        raise ConfigurationError(f"{where} does not exist; {hint}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{where} could not be read ({exc})") from exc
    try:
        return json.loads(text), where
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"{where} is not JSON ({exc.msg} at line {exc.lineno}); it "
                                 "must hold a JWKS document: {\"keys\": [...]}") from exc


def _jwks_keys(jwks: Mapping[str, Any] | str | os.PathLike[str]) -> list[_Key]:
    document, where = _read_jwks(jwks)
    keys = document.get("keys") if isinstance(document, Mapping) else None
    if not isinstance(keys, list | tuple):
        raise ConfigurationError(f"{where}: expected a JWKS document, a JSON object with a 'keys' "
                                 "list: {\"keys\": [{\"kty\": \"RSA\", \"kid\": ..., ...}]}")
    out: list[_Key] = []
    kids: set[str] = set()
    for index, jwk in enumerate(keys):
        at = f"{where}: key {index}"
        if isinstance(jwk, Mapping) and jwk.get("use", "sig") != "sig":
            continue  # an encryption key published alongside the signing keys
        entry = _jwk_key(jwk, at)
        if entry.kid is not None:
            if entry.kid in kids:
                raise ConfigurationError(f"{at}: kid {entry.kid!r} names two keys; each key needs "
                                         "its own kid")
            kids.add(entry.kid)
        out.append(entry)
    if not out:
        raise ConfigurationError(f"{where}: holds no signing keys")
    return out


def _names(value: str | Iterable[str], field: str, example: str) -> frozenset[str]:
    items: list[object] = [value] if isinstance(value, str) else (
        list(value) if isinstance(value, Iterable) else [])
    if not items or any(not isinstance(v, str) or not v for v in items):
        raise ConfigurationError(f"{field}: give at least one non-empty string, e.g. {example!r}")
    return frozenset(str(v) for v in items)


def _number(value: object, field: str, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value < 0 or (positive and value == 0):
        raise ConfigurationError(f"{field}: expected a {'positive' if positive else 'non-negative'} "
                                 f"number of seconds, got {value!r}")
    return float(value)


class JWTAuthenticator:
    """Verifies OIDC / JWT-SVID bearer tokens and maps them to registered agents.

    Keys are local (``jwks`` or ``key``, exactly one), so verifying does no
    I/O. ``algorithms`` may hold only asymmetric JWS algorithms. ``leeway``
    absorbs clock skew on ``exp``, ``nbf`` and ``iat``; ``max_lifetime``
    (``None`` to turn it off) rejects tokens valid for longer than that many
    seconds, since a long-lived agent token is a standing credential.
    ``subject_claim`` names the claim that identifies the agent. A
    ``trust_domain`` restricts ``spiffe://`` subjects to that trust domain.

    A token without ``kid`` needs there to be exactly one key; a lone key
    without a kid verifies tokens whatever their ``kid``.
    """

    def __init__(self, registry: AgentRegistry, *, issuer: str | Iterable[str],
                 audience: str | Iterable[str],
                 jwks: Mapping[str, Any] | str | os.PathLike[str] | None = None,
                 key: Any = None,
                 algorithms: Iterable[str] = ("RS256", "ES256", "EdDSA", "PS256"),
                 leeway: float = 30.0, max_lifetime: float | None = 3600.0,
                 subject_claim: str = "sub", trust_domain: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        try:
            import cryptography  # noqa: F401
            import jwt
        except ImportError as exc:
            raise ImportError(_JWT_HINT) from exc

        self._registry = registry
        self._issuers = _names(issuer, "issuer", "https://idp.example.com")
        self._audiences = _names(audience, "audience", "https://api.example.com")
        self._known_algorithms = frozenset(jwt.algorithms.get_default_algorithms())
        self._algorithms = self._check_algorithms(algorithms, self._known_algorithms)
        self._leeway = _number(leeway, "leeway", positive=False)
        self._max_lifetime = None if max_lifetime is None else _number(
            max_lifetime, "max_lifetime", positive=True)
        if not isinstance(subject_claim, str) or not subject_claim:
            raise ConfigurationError("subject_claim: name the claim that identifies the agent, "
                                     "e.g. 'sub'")
        self._subject_claim = subject_claim
        self._trust_domain = (None if trust_domain is None
                              else _check_trust_domain(trust_domain, "trust_domain"))
        if not callable(clock):
            raise ConfigurationError("clock: expected a function returning Unix time, like time.time")
        self._clock = clock

        if (jwks is None) == (key is None):
            raise ConfigurationError("give exactly one of jwks= (the issuer's JWKS document or a "
                                     "JSON file holding it) and key= (one public key), "
                                     f"got {'both' if key is not None else 'neither'}")
        keys = _jwks_keys(jwks) if jwks is not None else [_configured_key(key)]
        keys = [replace(k, algorithms=k.algorithms & self._algorithms) for k in keys]
        if not any(k.algorithms for k in keys):
            kinds = ", ".join(sorted({k.kind for k in keys}))
            raise ConfigurationError(f"algorithms: none of {sorted(self._algorithms)} fits the "
                                     f"configured keys ({kinds}); allow the algorithm the issuer "
                                     "signs with")
        self._keys = tuple(keys)
        self._by_kid = {k.kid: k for k in keys if k.kid is not None}
        self._require = ["exp", "iss", "aud", subject_claim]

    @staticmethod
    def _check_algorithms(algorithms: Iterable[str], known: frozenset[str]) -> frozenset[str]:
        names = [algorithms] if isinstance(algorithms, str) else list(algorithms)
        if not names:
            raise ConfigurationError("algorithms: allow at least one, e.g. ('RS256', 'ES256')")
        for name in names:
            if not isinstance(name, str):
                raise ConfigurationError(f"algorithms: expected names such as 'RS256', got "
                                         f"{type(name).__name__}")
            if name.lower() == "none":
                raise ConfigurationError("algorithms: 'none' accepts unsigned tokens, so anyone "
                                         "could claim to be any agent; remove it")
            if name.upper().startswith("HS"):
                raise ConfigurationError(
                    f"algorithms: {name!r} is symmetric and is refused: verifying HS* with a "
                    "public key lets anyone who has that public key sign tokens (the "
                    "key-confusion attack); use the issuer's asymmetric algorithm (RS256, ES256, "
                    "EdDSA, PS256)")
            if name not in known:
                supported = sorted(n for n in known if n != "none" and not n.startswith("HS"))
                raise ConfigurationError(f"algorithms: {name!r} is not a JWS algorithm PyJWT "
                                         f"supports; choose from {', '.join(supported)}")
        return frozenset(names)

    # ------------------------------------------------------------ verifying
    def authenticate(self, token: str) -> Entity:
        """The registered, active agent ``token`` names; raises :class:`Unauthenticated`."""
        claims = self._verified_claims(token)
        subject = claims.get(self._subject_claim)
        if not isinstance(subject, str) or not subject:
            _reject(f"token claim {self._subject_claim!r} must be a non-empty string")
        if subject.startswith("spiffe://"):
            return _spiffe_agent(self._registry, subject, self._trust_domain, "token subject")
        return _active_agent(self._registry, subject if ":" in subject else f"agent:{subject}")

    async def aauthenticate(self, token: str) -> Entity:
        """:meth:`authenticate` for async code; the keys are local, so nothing is awaited."""
        return self.authenticate(token)

    def _verified_claims(self, token: object) -> dict[str, Any]:
        if not isinstance(token, str):
            _reject(f"a bearer token is a string, got {type(token).__name__}")
        if not token:
            _reject("no bearer token")
        if len(token) > MAX_TOKEN_LENGTH:
            _reject(f"token is longer than {MAX_TOKEN_LENGTH} characters")
        if not _TOKEN_SHAPE.fullmatch(token):
            _reject("token is not a compact JWS: three base64url parts joined by '.'")
        try:
            claims = self._decode(token)
        except (ValueError, TypeError, RecursionError, OverflowError) as exc:
            # PyJWT raises its own errors for bad tokens; anything else is a defect
            # somewhere, and it still must not let a token through
            log.warning("token verification failed unexpectedly: %s", type(exc).__name__)
            raise Unauthenticated(None, "token could not be verified") from exc
        self._check_claims(claims)
        return claims

    def _decode(self, token: str) -> dict[str, Any]:
        import jwt

        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError as exc:
            raise Unauthenticated(None, "token header is malformed") from exc
        except jwt.PyJWTError as exc:  # newer PyJWT checks 'kid' and 'crit' here
            raise Unauthenticated(None, "token header is not acceptable (a 'kid' that is not a "
                                  "string, or unsupported 'crit' extensions)") from exc
        alg = header.get("alg")
        if not isinstance(alg, str) or not alg:
            _reject("token header 'alg' is missing or not a string")
        if alg.lower() == "none":
            _reject("token is unsigned (alg 'none'); unsigned tokens are refused")
        if alg not in self._algorithms:
            if alg.upper().startswith("HS"):
                _reject("token is signed with a symmetric algorithm (HS*); only public-key "
                        "signatures are accepted")
            named = repr(alg) if alg in self._known_algorithms else "(unknown)"
            _reject(f"token algorithm {named} is not allowed; allowed: "
                    f"{', '.join(sorted(self._algorithms))}")
        if "crit" in header:
            _reject("token header lists critical extensions ('crit'); none are supported")
        entry = self._select_key(header.get("kid"))
        if alg not in entry.algorithms:
            _reject(f"token algorithm {alg!r} does not fit the {entry.kind} key it selects")
        try:
            return jwt.decode(
                token, entry.key, algorithms=[alg], audience=self._audiences,
                options={"verify_signature": True, "require": self._require, "verify_aud": True,
                         # iss and time claims are checked below: PyJWT cannot take our clock,
                         # and its issuer matching changed across 2.x releases
                         "verify_iss": False, "verify_exp": False, "verify_nbf": False,
                         "verify_iat": False, "verify_sub": False},
            )
        except jwt.InvalidSignatureError as exc:
            raise Unauthenticated(None, "token signature is invalid") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthenticated(None, f"token lacks the required {exc.claim!r} claim") from exc
        except jwt.InvalidAudienceError as exc:
            raise Unauthenticated(None, "token audience ('aud') names none of the accepted "
                                  "audiences") from exc
        except jwt.InvalidAlgorithmError as exc:
            raise Unauthenticated(None, "token algorithm is not allowed") from exc
        except jwt.DecodeError as exc:
            raise Unauthenticated(None, "token is malformed (header, payload or signature "
                                  "could not be decoded)") from exc
        except jwt.PyJWTError as exc:
            raise Unauthenticated(None, f"token is invalid ({type(exc).__name__})") from exc

    def _select_key(self, kid: object) -> _Key:
        if kid is None:
            if len(self._keys) == 1:
                return self._keys[0]
            _reject(f"token has no 'kid' header, and there are {len(self._keys)} keys to choose "
                    "from")
        if not isinstance(kid, str):
            _reject("token 'kid' header must be a string")
        entry = self._by_kid.get(kid)
        if entry is not None:
            return entry
        if len(self._keys) == 1 and self._keys[0].kid is None:
            return self._keys[0]
        _reject("token 'kid' names none of the configured keys")

    def _check_claims(self, claims: Mapping[str, Any]) -> None:
        iss = claims.get("iss")
        if not isinstance(iss, str) or iss not in self._issuers:
            shown = _clip(iss) if isinstance(iss, str) else type(iss).__name__
            _reject(f"token issuer {shown} is not a configured issuer")
        now = self._clock()
        leeway = self._leeway
        exp = _numeric_date(claims, "exp")
        iat = _numeric_date(claims, "iat")
        nbf = _numeric_date(claims, "nbf")
        if exp is None:  # pragma: no cover - PyJWT's 'require' has rejected it
            _reject("token lacks the required 'exp' claim")
        if iat is None and nbf is None:
            _reject("token carries neither 'iat' nor 'nbf', so its lifetime cannot be bounded")
        if now >= exp + leeway:
            _reject(f"token expired {now - exp:.0f}s ago")
        if nbf is not None and now < nbf - leeway:
            _reject(f"token is not valid yet ('nbf' is {nbf - now:.0f}s ahead)")
        if iat is not None and iat > now + leeway:
            _reject(f"token was issued in the future ('iat' is {iat - now:.0f}s ahead); check clocks")
        start = min(t for t in (iat, nbf) if t is not None)
        if exp <= start:
            _reject("token expires before it becomes valid ('exp' is not after 'iat'/'nbf')")
        if self._max_lifetime is not None and exp - start > self._max_lifetime:
            _reject(f"token lifetime {exp - start:.0f}s exceeds the {self._max_lifetime:.0f}s "
                    "maximum; issue short-lived agent tokens")


def _numeric_date(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        _reject(f"token claim {name!r} must be a number of seconds since the epoch")
    return float(value)


# ----------------------------------------------------------------------- SPIFFE
class SpiffeAuthenticator:
    """Maps the SPIFFE id of a verified mTLS peer (an X.509-SVID) to a registered agent.

    Chain verification is the TLS layer's job: run the server with
    ``ssl.CERT_REQUIRED`` and the trust domain's bundle loaded, and pass the
    peer certificate of the established connection. Only its URI SAN is read
    here.
    """

    def __init__(self, registry: AgentRegistry, *, trust_domain: str) -> None:
        self._registry = registry
        self._trust_domain = _check_trust_domain(trust_domain, "trust_domain")

    def from_spiffe_id(self, spiffe_id: str) -> Entity:
        """The registered, active agent of a SPIFFE id in this trust domain.

        The id is checked against the SPIFFE-ID spec: scheme ``spiffe``, a
        lowercase trust domain, non-empty path segments of letters, digits,
        ``.``, ``-`` and ``_`` (no ``.`` or ``..``), no query, fragment, user
        info or port, at most 2048 bytes.
        """
        return _spiffe_agent(self._registry, spiffe_id, self._trust_domain, "peer")

    def from_peer_certificate(self, cert: Mapping[str, Any] | bytes) -> Entity:
        """The registered, active agent of a peer's X.509-SVID.

        ``cert`` is the dict of ``SSLSocket.getpeercert()`` or the DER bytes of
        ``getpeercert(binary_form=True)``. Neither form is verified here: the
        TLS handshake verified the chain, and only the certificate's URI SAN
        is read (an X.509-SVID carries exactly one).
        """
        uris = _der_uri_sans(cert) if isinstance(cert, bytes | bytearray) else _dict_uri_sans(cert)
        if not uris:
            _reject("peer certificate has no URI SAN, so it is not an X.509-SVID")
        if len(uris) > 1:
            _reject(f"peer certificate has {len(uris)} URI SANs; an X.509-SVID has exactly one")
        return self.from_spiffe_id(uris[0])


def _dict_uri_sans(cert: object) -> list[str]:
    if cert is None:
        _reject("no peer certificate: the peer presented none")
    if not isinstance(cert, Mapping):
        _reject(f"peer certificate: expected getpeercert()'s dict or DER bytes, got "
                f"{type(cert).__name__}")
    if not cert:
        _reject("peer certificate was not verified (getpeercert() returned an empty dict: "
                "require client certificates with ssl.CERT_REQUIRED)")
    names = cert.get("subjectAltName", ())
    if not isinstance(names, tuple | list):
        _reject("peer certificate: 'subjectAltName' is malformed")
    uris = []
    for entry in names:
        if not isinstance(entry, tuple | list) or len(entry) != 2:
            _reject("peer certificate: 'subjectAltName' is malformed")
        if entry[0] == "URI":
            if not isinstance(entry[1], str):
                _reject("peer certificate: a URI SAN is not a string")
            uris.append(entry[1])
    return uris


def _der_uri_sans(der: bytes | bytearray) -> list[str]:
    try:
        from cryptography import x509
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("reading a DER certificate needs cryptography: pip install "
                          "'agentauthz[jwt]', or pass getpeercert()'s dict") from exc
    if not der:
        _reject("peer certificate is empty")
    try:
        cert = x509.load_der_x509_certificate(bytes(der))
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        except x509.ExtensionNotFound:
            return []
        return list(san.value.get_values_for_type(x509.UniformResourceIdentifier))
    except ValueError as exc:
        raise Unauthenticated(None, "peer certificate is not a readable DER X.509 certificate") \
            from exc
