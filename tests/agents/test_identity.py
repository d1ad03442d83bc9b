from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import socket
import ssl
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from agentauthz.agents.identity import JWTAuthenticator, SpiffeAuthenticator
from agentauthz.agents.registry import AgentRegistry
from agentauthz.errors import ConfigurationError, Unauthenticated
from agentauthz.model import Entity

NOW = 1_700_000_000.0
ISSUER = "https://idp.example.com"
AUDIENCE = "agentauthz-api"
SUPPORT_SPIFFE = "spiffe://example.org/agents/support-bot"
SUPPORT = Entity("agent", "support-bot")
BILLING = Entity("agent", "billing-bot")


# ---------------------------------------------------------------- fixtures
RSAKey = rsa.RSAPrivateKey
ECKey = ec.EllipticCurvePrivateKey
EdKey = ed25519.Ed25519PrivateKey


@dataclass(frozen=True)
class Keys:
    rsa: RSAKey
    rsa_other: RSAKey
    ec: ECKey
    ed: EdKey

    def rsa_pem(self) -> bytes:
        return self.rsa.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys(rsa=rsa.generate_private_key(public_exponent=65537, key_size=2048),
                rsa_other=rsa.generate_private_key(public_exponent=65537, key_size=2048),
                ec=ec.generate_private_key(ec.SECP256R1()),
                ed=ed25519.Ed25519PrivateKey.generate())


def jwk(public: Any, kid: str | None = None, **extra: Any) -> dict[str, Any]:
    if isinstance(public, rsa.RSAPublicKey):
        text = RSAAlgorithm.to_jwk(public)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        text = ECAlgorithm.to_jwk(public)
    else:
        text = OKPAlgorithm.to_jwk(public)
    data: dict[str, Any] = json.loads(text)
    if kid is not None:
        data["kid"] = kid
    data.update(extra)
    return data


@pytest.fixture(scope="module")
def jwks(keys: Keys) -> dict[str, Any]:
    return {"keys": [jwk(keys.rsa.public_key(), "rsa-1", use="sig"),
                     jwk(keys.ec.public_key(), "ec-1"),
                     jwk(keys.ed.public_key(), "ed-1")]}


@pytest.fixture
def registry() -> AgentRegistry:
    agents = AgentRegistry()
    agents.register("support-bot", owner="team:support", purpose="answers tickets",
                    spiffe_id=SUPPORT_SPIFFE)
    agents.register("billing-bot", owner="team:billing", purpose="issues refunds",
                    spiffe_id="spiffe://example.org/agents/billing-bot")
    agents.register("foreign-bot", owner="team:support", purpose="lives in another trust domain",
                    spiffe_id="spiffe://other.org/agents/support-bot")
    return agents


def claims(**changes: Any) -> dict[str, Any]:
    """Valid claims for support-bot; a change to None removes that claim."""
    base: dict[str, Any] = {"iss": ISSUER, "aud": AUDIENCE, "sub": "support-bot",
                            "iat": int(NOW) - 10, "exp": int(NOW) + 300}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def sign(private: Any, alg: str, payload: dict[str, Any], kid: str | None = None,
         **headers: Any) -> str:
    if kid is not None:
        headers["kid"] = kid
    return jwt.encode(payload, private, algorithm=alg, headers=headers or None)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: dict[str, Any]) -> str:
    return b64(json.dumps(value).encode())


def authenticator(registry: AgentRegistry, **options: Any) -> JWTAuthenticator:
    options.setdefault("issuer", ISSUER)
    options.setdefault("audience", AUDIENCE)
    options.setdefault("clock", lambda: NOW)
    return JWTAuthenticator(registry, **options)


@pytest.fixture
def authn(registry: AgentRegistry, jwks: dict[str, Any]) -> JWTAuthenticator:
    return authenticator(registry, jwks=jwks)


def rejected(authn: JWTAuthenticator, token: Any) -> str:
    """The message of the Unauthenticated the token gets; checks that it does not echo the token."""
    with pytest.raises(Unauthenticated) as info:
        authn.authenticate(token)
    message = str(info.value)
    assert info.value.decision is None
    if isinstance(token, str) and len(token) > 8:
        for part in token.split("."):
            assert len(part) < 8 or part not in message
    return message


# ------------------------------------------------------------- accepted
@pytest.mark.parametrize(("alg", "kid"), [("RS256", "rsa-1"), ("PS256", "rsa-1"), ("ES256", "ec-1"),
                                          ("EdDSA", "ed-1")])
def test_signed_token_maps_to_its_agent(authn: JWTAuthenticator, keys: Keys, alg: str,
                                        kid: str) -> None:
    private = {"rsa-1": keys.rsa, "ec-1": keys.ec, "ed-1": keys.ed}[kid]
    entity = authn.authenticate(sign(private, alg, claims(), kid))
    assert entity == SUPPORT
    assert entity.key == "agent:support-bot"


async def test_aauthenticate_gives_the_same_answer(authn: JWTAuthenticator, keys: Keys) -> None:
    token = sign(keys.rsa, "RS256", claims(), "rsa-1")
    assert await authn.aauthenticate(token) == SUPPORT
    with pytest.raises(Unauthenticated, match="expired"):
        await authn.aauthenticate(sign(keys.rsa, "RS256", claims(exp=int(NOW) - 100), "rsa-1"))


def test_kid_selects_among_rotated_keys(registry: AgentRegistry, keys: Keys) -> None:
    rotated = {"keys": [jwk(keys.rsa.public_key(), "2024"), jwk(keys.rsa_other.public_key(), "2025")]}
    authn = authenticator(registry, jwks=rotated)
    assert authn.authenticate(sign(keys.rsa, "RS256", claims(), "2024")) == SUPPORT
    assert authn.authenticate(sign(keys.rsa_other, "RS256", claims(), "2025")) == SUPPORT


def test_jwks_read_from_a_file(registry: AgentRegistry, keys: Keys, jwks: dict[str, Any],
                               tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks))
    authn = authenticator(registry, jwks=path)
    assert authn.authenticate(sign(keys.ec, "ES256", claims(), "ec-1")) == SUPPORT
    assert authenticator(registry, jwks=str(path)).authenticate(
        sign(keys.ed, "EdDSA", claims(), "ed-1")) == SUPPORT


def test_encryption_keys_in_the_jwks_are_skipped(registry: AgentRegistry, keys: Keys) -> None:
    document = {"keys": [jwk(keys.rsa.public_key(), "enc", use="enc"), jwk(keys.ec.public_key())]}
    authn = authenticator(registry, jwks=document)
    # one signing key left, so a token without kid selects it
    assert authn.authenticate(sign(keys.ec, "ES256", claims())) == SUPPORT


@pytest.mark.parametrize("form", ["pem-str", "pem-bytes", "object", "jwk", "certificate"])
def test_one_configured_key(registry: AgentRegistry, keys: Keys, form: str) -> None:
    public = keys.rsa.public_key()
    if form == "pem-str":
        key: Any = keys.rsa_pem().decode()
    elif form == "pem-bytes":
        key = keys.rsa_pem()
    elif form == "object":
        key = public
    elif form == "jwk":
        key = jwk(public, "rsa-1")
    else:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idp")])
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(public)
                .serial_number(1).not_valid_before(dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
                .not_valid_after(dt.datetime(2040, 1, 1, tzinfo=dt.UTC))
                .sign(keys.rsa, hashes.SHA256()))
        key = cert.public_bytes(serialization.Encoding.PEM)
    authn = authenticator(registry, key=key)
    assert authn.authenticate(sign(keys.rsa, "RS256", claims())) == SUPPORT
    assert authn.authenticate(sign(keys.rsa, "RS256", claims(), "rsa-1")) == SUPPORT


def test_expired_within_leeway_is_accepted(authn: JWTAuthenticator, keys: Keys) -> None:
    token = sign(keys.rsa, "RS256", claims(iat=int(NOW) - 300, exp=int(NOW) - 20), "rsa-1")
    assert authn.authenticate(token) == SUPPORT


def test_full_agent_key_as_subject(authn: JWTAuthenticator, keys: Keys) -> None:
    assert authn.authenticate(sign(keys.rsa, "RS256", claims(sub="agent:billing-bot"), "rsa-1")) \
        == BILLING


def test_audience_list_and_several_issuers(registry: AgentRegistry, jwks: dict[str, Any],
                                           keys: Keys) -> None:
    authn = authenticator(registry, jwks=jwks, issuer=[ISSUER, "https://idp2.example.com"],
                          audience=("other-api", AUDIENCE))
    token = sign(keys.ec, "ES256", claims(iss="https://idp2.example.com",
                                          aud=["unrelated", AUDIENCE]), "ec-1")
    assert authn.authenticate(token) == SUPPORT


def test_nbf_bounds_the_lifetime_when_iat_is_absent(authn: JWTAuthenticator, keys: Keys) -> None:
    token = sign(keys.rsa, "RS256", claims(iat=None, nbf=int(NOW) - 5), "rsa-1")
    assert authn.authenticate(token) == SUPPORT


def test_lifetime_check_can_be_turned_off(registry: AgentRegistry, jwks: dict[str, Any],
                                          keys: Keys) -> None:
    authn = authenticator(registry, jwks=jwks, max_lifetime=None)
    token = sign(keys.rsa, "RS256", claims(exp=int(NOW) + 30 * 86400), "rsa-1")
    assert authn.authenticate(token) == SUPPORT


def test_custom_subject_claim(registry: AgentRegistry, jwks: dict[str, Any], keys: Keys) -> None:
    authn = authenticator(registry, jwks=jwks, subject_claim="agent_id")
    token = sign(keys.rsa, "RS256", claims(sub="user:alice", agent_id="billing-bot"), "rsa-1")
    assert authn.authenticate(token) == BILLING
    assert "'agent_id'" in rejected(authn, sign(keys.rsa, "RS256", claims(), "rsa-1"))


def test_jwt_svid_spiffe_subject_maps_through_the_registry(registry: AgentRegistry,
                                                           jwks: dict[str, Any], keys: Keys) -> None:
    authn = authenticator(registry, jwks=jwks, trust_domain="example.org")
    assert authn.authenticate(sign(keys.ec, "ES256", claims(sub=SUPPORT_SPIFFE), "ec-1")) == SUPPORT


# -------------------------------------------------------------- rejected
def test_alg_none_is_rejected(authn: JWTAuthenticator) -> None:
    token = f"{b64json({'alg': 'none', 'typ': 'JWT'})}.{b64json(claims())}."
    assert "unsigned" in rejected(authn, token)
    token = f"{b64json({'alg': 'None', 'kid': 'rsa-1'})}.{b64json(claims())}."
    assert "unsigned" in rejected(authn, token)


def test_hs256_signed_with_the_public_key_is_rejected(registry: AgentRegistry, keys: Keys) -> None:
    pem = keys.rsa_pem()
    authn = authenticator(registry, key=pem)
    signing_input = f"{b64json({'alg': 'HS256', 'typ': 'JWT'})}.{b64json(claims())}"
    signature = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    assert "symmetric" in rejected(authn, f"{signing_input}.{b64(signature)}")


def test_expired_token_is_rejected(authn: JWTAuthenticator, keys: Keys) -> None:
    token = sign(keys.rsa, "RS256", claims(iat=int(NOW) - 600, exp=int(NOW) - 31), "rsa-1")
    assert "expired" in rejected(authn, token)


def test_not_yet_valid_token_is_rejected(authn: JWTAuthenticator, keys: Keys) -> None:
    token = sign(keys.rsa, "RS256", claims(nbf=int(NOW) + 120, exp=int(NOW) + 600), "rsa-1")
    assert "not valid yet" in rejected(authn, token)


def test_token_issued_in_the_future_is_rejected(authn: JWTAuthenticator, keys: Keys) -> None:
    token = sign(keys.rsa, "RS256", claims(iat=int(NOW) + 120, exp=int(NOW) + 600), "rsa-1")
    assert "issued in the future" in rejected(authn, token)


def test_wrong_audience_is_rejected(authn: JWTAuthenticator, keys: Keys) -> None:
    token = sign(keys.rsa, "RS256", claims(aud=["some-other-api"]), "rsa-1")
    assert "audience" in rejected(authn, token)


def test_wrong_issuer_is_rejected(authn: JWTAuthenticator, keys: Keys) -> None:
    token = sign(keys.rsa, "RS256", claims(iss="https://evil.example.com"), "rsa-1")
    assert "issuer" in rejected(authn, token)


def test_issuer_prefix_is_not_a_match(authn: JWTAuthenticator, keys: Keys) -> None:
    # PyJWT 2.10.0 matched a str issuer by substring; the issuer check here is exact
    token = sign(keys.rsa, "RS256", claims(iss="https://idp"), "rsa-1")
    assert "issuer" in rejected(authn, token)


def test_token_signed_by_another_key_with_the_same_kid_is_rejected(authn: JWTAuthenticator,
                                                                   keys: Keys) -> None:
    token = sign(keys.rsa_other, "RS256", claims(), "rsa-1")
    assert "signature is invalid" in rejected(authn, token)


def test_unknown_kid_is_rejected(authn: JWTAuthenticator, keys: Keys) -> None:
    token = sign(keys.rsa, "RS256", claims(), "rsa-9")
    assert "'kid' names none" in rejected(authn, token)


def test_token_without_kid_is_rejected_when_there_are_several_keys(authn: JWTAuthenticator,
                                                                   keys: Keys) -> None:
    assert "no 'kid'" in rejected(authn, sign(keys.rsa, "RS256", claims()))


def test_configured_key_with_a_kid_rejects_another_kid(registry: AgentRegistry, keys: Keys) -> None:
    authn = authenticator(registry, key=jwk(keys.rsa.public_key(), "rsa-1"))
    assert "'kid' names none" in rejected(authn, sign(keys.rsa, "RS256", claims(), "rsa-2"))


def test_algorithm_that_does_not_fit_the_selected_key_is_rejected(authn: JWTAuthenticator,
                                                                  keys: Keys) -> None:
    token = sign(keys.ec, "ES256", claims(), "rsa-1")
    assert "does not fit" in rejected(authn, token)


def test_algorithm_outside_the_allowlist_is_rejected(authn: JWTAuthenticator, keys: Keys) -> None:
    assert "not allowed" in rejected(authn, sign(keys.rsa, "RS512", claims(), "rsa-1"))


def test_critical_header_extension_is_rejected(authn: JWTAuthenticator, keys: Keys) -> None:
    token = sign(keys.rsa, "RS256", claims(), "rsa-1", crit=["exp-ext"], **{"exp-ext": 1})
    assert "'crit'" in rejected(authn, token)


@pytest.mark.parametrize("claim", ["sub", "exp", "iss", "aud"])
def test_missing_required_claim_is_rejected(authn: JWTAuthenticator, keys: Keys,
                                            claim: str) -> None:
    token = sign(keys.rsa, "RS256", claims(**{claim: None}), "rsa-1")
    assert f"'{claim}'" in rejected(authn, token)


def test_missing_iat_and_nbf_is_rejected(authn: JWTAuthenticator, keys: Keys) -> None:
    token = sign(keys.rsa, "RS256", claims(iat=None), "rsa-1")
    assert "neither 'iat' nor 'nbf'" in rejected(authn, token)


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
def test_time_claim_that_is_not_a_number_is_rejected(authn: JWTAuthenticator, keys: Keys,
                                                     claim: str) -> None:
    token = sign(keys.rsa, "RS256", claims(**{claim: str(int(NOW))}), "rsa-1")
    assert f"'{claim}' must be a number" in rejected(authn, token)


def test_empty_subject_is_rejected(authn: JWTAuthenticator, keys: Keys) -> None:
    assert "non-empty string" in rejected(authn, sign(keys.rsa, "RS256", claims(sub=""), "rsa-1"))


def test_too_long_lifetime_is_rejected(authn: JWTAuthenticator, keys: Keys) -> None:
    token = sign(keys.rsa, "RS256", claims(iat=int(NOW) - 10, exp=int(NOW) + 86400), "rsa-1")
    assert "exceeds the 3600s maximum" in rejected(authn, token)


def test_exp_before_iat_is_rejected(authn: JWTAuthenticator, keys: Keys) -> None:
    token = sign(keys.rsa, "RS256", claims(iat=int(NOW) + 20, exp=int(NOW) + 10), "rsa-1")
    assert "expires before" in rejected(authn, token)


def test_tampered_payload_is_rejected(authn: JWTAuthenticator, keys: Keys) -> None:
    header, payload, signature = sign(keys.rsa, "RS256", claims(), "rsa-1").split(".")
    middle = len(payload) // 2
    flipped = payload[:middle] + ("A" if payload[middle] != "A" else "B") + payload[middle + 1:]
    assert "signature is invalid" in rejected(authn, f"{header}.{flipped}.{signature}")


def test_token_for_one_agent_never_authenticates_another(authn: JWTAuthenticator,
                                                         keys: Keys) -> None:
    token = sign(keys.rsa, "RS256", claims(sub="support-bot"), "rsa-1")
    assert authn.authenticate(token) == SUPPORT
    assert authn.authenticate(token) != BILLING
    # rewriting the subject to another agent breaks the signature
    header, _, signature = token.split(".")
    forged = f"{header}.{b64json(claims(sub='billing-bot'))}.{signature}"
    assert "signature is invalid" in rejected(authn, forged)


def test_subject_naming_an_unregistered_agent_is_rejected(authn: JWTAuthenticator,
                                                          keys: Keys) -> None:
    message = rejected(authn, sign(keys.rsa, "RS256", claims(sub="ghost-bot"), "rsa-1"))
    assert "'agent:ghost-bot' is not registered" in message


def test_subject_naming_a_user_is_rejected(authn: JWTAuthenticator, keys: Keys) -> None:
    assert "not registered" in rejected(authn, sign(keys.rsa, "RS256", claims(sub="user:alice"),
                                                    "rsa-1"))


def test_suspended_agent_is_rejected(authn: JWTAuthenticator, registry: AgentRegistry,
                                     keys: Keys) -> None:
    token = sign(keys.rsa, "RS256", claims(), "rsa-1")
    assert authn.authenticate(token) == SUPPORT
    registry.suspend("support-bot", reason="incident 42")
    message = rejected(authn, token)
    assert "suspended" in message
    assert "incident 42" in message


def test_retired_agent_is_rejected(authn: JWTAuthenticator, registry: AgentRegistry,
                                   keys: Keys) -> None:
    registry.retire("billing-bot", reason="replaced")
    assert "retired" in rejected(authn, sign(keys.rsa, "RS256", claims(sub="billing-bot"), "rsa-1"))


def test_spiffe_subject_from_another_trust_domain_is_rejected(registry: AgentRegistry,
                                                              jwks: dict[str, Any],
                                                              keys: Keys) -> None:
    authn = authenticator(registry, jwks=jwks, trust_domain="example.org")
    token = sign(keys.ec, "ES256", claims(sub="spiffe://other.org/agents/support-bot"), "ec-1")
    assert "trust domain 'other.org'" in rejected(authn, token)


def test_unregistered_spiffe_subject_is_rejected(authn: JWTAuthenticator, keys: Keys) -> None:
    token = sign(keys.ec, "ES256", claims(sub="spiffe://example.org/agents/ghost"), "ec-1")
    assert "names no registered agent" in rejected(authn, token)


def test_malformed_spiffe_subject_is_rejected(authn: JWTAuthenticator, keys: Keys) -> None:
    token = sign(keys.ec, "ES256", claims(sub="spiffe://example.org/agents/../admin"), "ec-1")
    assert "'..'" in rejected(authn, token)


def test_unexpected_verification_error_still_rejects(authn: JWTAuthenticator, keys: Keys,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("a defect inside the verifier")

    monkeypatch.setattr(jwt, "decode", broken)
    with caplog.at_level("WARNING", logger="agentauthz.identity"):
        assert "could not be verified" in rejected(authn, sign(keys.rsa, "RS256", claims(), "rsa-1"))
    assert "ValueError" in caplog.text


@pytest.mark.parametrize("token", [
    None, 123, b"a.b.c", "", "a.b", "a.b.c.d", "x" * 20 * 1024, "é.é.é", "ey.ey.ey",
    "eyJhbGciOiJSUzI1NiJ9.e30.\u0000", "e30.e30.", "W10.e30.AA", "bm90IGpzb24.e30.AA",
    f"{b64json({'alg': 'RS256', 'kid': 7})}.{b64json(claims())}.AA",
    f"{b64json({'alg': 'RS256', 'kid': 'rsa-1'})}.{b64(b'not json')}.AA",
    f"{b64json({'alg': 'RS256', 'kid': 'rsa-1'})}.{b64(b'[1, 2]')}.AA",
    f"{b64json({'alg': ['RS256'], 'kid': 'rsa-1'})}.{b64json(claims())}.AA",
], ids=lambda t: type(t).__name__ if not isinstance(t, str) else repr(t[:24]))
def test_garbage_input_is_unauthenticated(authn: JWTAuthenticator, token: Any) -> None:
    rejected(authn, token)


def test_oversized_token_is_rejected_before_parsing(authn: JWTAuthenticator, keys: Keys) -> None:
    token = sign(keys.rsa, "RS256", claims(padding="x" * 17000), "rsa-1")
    assert "longer than 16384" in rejected(authn, token)


# ------------------------------------------------------------ configuration
def test_both_jwks_and_key_is_a_configuration_error(registry: AgentRegistry, keys: Keys,
                                                    jwks: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match=r"exactly one of jwks= .* got both"):
        authenticator(registry, jwks=jwks, key=keys.rsa_pem())


def test_neither_jwks_nor_key_is_a_configuration_error(registry: AgentRegistry) -> None:
    with pytest.raises(ConfigurationError, match=r"exactly one of jwks= .* got neither"):
        authenticator(registry)


@pytest.mark.parametrize("algorithms", [("RS256", "none"), ("NONE",)])
def test_alg_none_in_algorithms_is_a_configuration_error(registry: AgentRegistry,
                                                         jwks: dict[str, Any],
                                                         algorithms: tuple[str, ...]) -> None:
    with pytest.raises(ConfigurationError, match="unsigned tokens"):
        authenticator(registry, jwks=jwks, algorithms=algorithms)


@pytest.mark.parametrize("algorithm", ["HS256", "HS512", "hs384"])
def test_symmetric_algorithm_is_a_configuration_error(registry: AgentRegistry,
                                                      jwks: dict[str, Any], algorithm: str) -> None:
    with pytest.raises(ConfigurationError, match="key-confusion"):
        authenticator(registry, jwks=jwks, algorithms=["RS256", algorithm])


@pytest.mark.parametrize(("algorithms", "match"), [
    ((), "at least one"), (("RS1",), "not a JWS algorithm"), ((256,), "expected names"),
])
def test_bad_algorithms_are_configuration_errors(registry: AgentRegistry, jwks: dict[str, Any],
                                                 algorithms: Any, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        authenticator(registry, jwks=jwks, algorithms=algorithms)


def test_algorithms_that_fit_no_key_are_a_configuration_error(registry: AgentRegistry,
                                                              keys: Keys) -> None:
    with pytest.raises(ConfigurationError, match="fits the configured keys"):
        authenticator(registry, key=keys.ec.public_key(), algorithms=["RS256"])


@pytest.mark.parametrize("document", [
    {}, {"keys": "abc"}, {"keys": None}, {"key": []}, ["not", "a", "dict"],
], ids=repr)
def test_jwks_without_a_keys_list_is_a_configuration_error(registry: AgentRegistry,
                                                           document: Any) -> None:
    with pytest.raises(ConfigurationError, match="'keys'"):
        authenticator(registry, jwks=document)


@pytest.mark.parametrize(("entry", "match"), [
    ({"kty": "oct", "k": "c2VjcmV0", "kid": "s"}, "symmetric keys"),
    ({"kty": "RSA", "n": "AQAB"}, "not a valid RSA public key|too weak"),
    ({"kty": "XYZ"}, "'kty' must be"),
    ("a string", "a JWK is a JSON object"),
    ({"kty": "EC", "crv": "P-256", "kid": 5}, "'kid' must be a string"),
])
def test_bad_jwks_entries_are_configuration_errors(registry: AgentRegistry, entry: Any,
                                                   match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        authenticator(registry, jwks={"keys": [entry]})


def test_empty_jwks_is_a_configuration_error(registry: AgentRegistry) -> None:
    with pytest.raises(ConfigurationError, match="no signing keys"):
        authenticator(registry, jwks={"keys": []})


def test_private_jwk_is_a_configuration_error(registry: AgentRegistry, keys: Keys) -> None:
    private = json.loads(ECAlgorithm.to_jwk(keys.ec))
    with pytest.raises(ConfigurationError, match="private key material"):
        authenticator(registry, jwks={"keys": [private]})


def test_duplicate_kid_is_a_configuration_error(registry: AgentRegistry, keys: Keys) -> None:
    document = {"keys": [jwk(keys.rsa.public_key(), "k"), jwk(keys.ec.public_key(), "k")]}
    with pytest.raises(ConfigurationError, match="kid 'k' names two keys"):
        authenticator(registry, jwks=document)


def test_jwk_alg_that_does_not_fit_its_key_is_a_configuration_error(registry: AgentRegistry,
                                                                    keys: Keys) -> None:
    with pytest.raises(ConfigurationError, match="'alg' 'ES256' does not fit"):
        authenticator(registry, jwks={"keys": [jwk(keys.rsa.public_key(), "r", alg="ES256")]})


def test_jwk_alg_narrows_the_key(registry: AgentRegistry, keys: Keys) -> None:
    authn = authenticator(registry, jwks={"keys": [jwk(keys.rsa.public_key(), "r", alg="PS256")]})
    assert authn.authenticate(sign(keys.rsa, "PS256", claims(), "r")) == SUPPORT
    assert "does not fit" in rejected(authn, sign(keys.rsa, "RS256", claims(), "r"))


def test_missing_jwks_file_names_the_path(registry: AgentRegistry, tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "jwks.json"
    with pytest.raises(ConfigurationError, match="does not exist") as info:
        authenticator(registry, jwks=path)
    assert str(path) in str(info.value)


def test_jwks_text_passed_as_a_str_explains_itself(registry: AgentRegistry) -> None:
    with pytest.raises(ConfigurationError, match=r"json\.loads"):
        authenticator(registry, jwks='{"keys": []}')


def test_jwks_file_that_is_not_json_names_the_path(registry: AgentRegistry, tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text("keys: [1, 2]\n")
    with pytest.raises(ConfigurationError, match="is not JSON") as info:
        authenticator(registry, jwks=path)
    assert str(path) in str(info.value)


def test_jwks_file_without_keys_names_the_path(registry: AgentRegistry, tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text("[]")
    with pytest.raises(ConfigurationError, match="'keys'") as info:
        authenticator(registry, jwks=path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("form", ["private-object", "private-pem"])
def test_private_key_is_a_configuration_error(registry: AgentRegistry, keys: Keys,
                                              form: str) -> None:
    key: Any = keys.ec if form == "private-object" else keys.ec.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    with pytest.raises(ConfigurationError, match="private key"):
        authenticator(registry, key=key)


@pytest.mark.parametrize(("key", "match"), [
    ("a shared secret", "shared secrets are refused"),
    (b"-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n", "could not be read"),
    (12345, "expected an RSA, EC or Ed25519"),
])
def test_unusable_key_is_a_configuration_error(registry: AgentRegistry, key: Any,
                                               match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        authenticator(registry, key=key)


def test_weak_rsa_key_is_a_configuration_error(registry: AgentRegistry) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    with pytest.raises(ConfigurationError, match="1024-bit RSA key is too weak"):
        authenticator(registry, key=weak)


@pytest.mark.parametrize(("options", "match"), [
    ({"issuer": ""}, "issuer"), ({"issuer": []}, "issuer"), ({"issuer": None}, "issuer"),
    ({"audience": ""}, "audience"),
    ({"audience": ["api", ""]}, "audience"), ({"leeway": -1}, "leeway"),
    ({"max_lifetime": 0}, "max_lifetime"), ({"subject_claim": ""}, "subject_claim"),
    ({"trust_domain": "Example.org"}, "trust_domain"),
    ({"trust_domain": "spiffe://example.org"}, "trust domain name"),
])
def test_bad_options_are_configuration_errors(registry: AgentRegistry, jwks: dict[str, Any],
                                              options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        authenticator(registry, jwks=jwks, **options)


def test_missing_pyjwt_says_how_to_install_it(registry: AgentRegistry, jwks: dict[str, Any],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "jwt", None)
    with pytest.raises(ImportError, match=r"pip install 'agentauthz\[jwt\]'") as info:
        authenticator(registry, jwks=jwks)
    assert isinstance(info.value.__cause__, ImportError)


def test_importing_the_module_imports_neither_pyjwt_nor_cryptography() -> None:
    code = ("import sys, agentauthz, agentauthz.agents.identity; "
            "print([m for m in ('jwt', 'cryptography') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------ SPIFFE ids
@pytest.fixture
def spiffe(registry: AgentRegistry) -> SpiffeAuthenticator:
    return SpiffeAuthenticator(registry, trust_domain="example.org")


@pytest.mark.parametrize("spiffe_id", [
    "spiffe://example.org/Agents/Bot_1", "spiffe://example.org/a/b.c/d-e_f",
    "spiffe://example.org/..../...", "spiffe://example.org/" + "/".join(["x"] * 1000),
])
def test_valid_spiffe_ids_map_to_their_agents(registry: AgentRegistry, spiffe: SpiffeAuthenticator,
                                              spiffe_id: str) -> None:
    registry.register("agent:probe", owner="team:support", purpose="parsing probe",
                      spiffe_id=spiffe_id)
    assert spiffe.from_spiffe_id(spiffe_id) == Entity("agent", "probe")


def test_spiffe_id_maps_to_its_agent(spiffe: SpiffeAuthenticator) -> None:
    assert spiffe.from_spiffe_id(SUPPORT_SPIFFE) == SUPPORT
    assert spiffe.from_spiffe_id("spiffe://example.org/agents/billing-bot") == BILLING


@pytest.mark.parametrize(("spiffe_id", "problem"), [
    ("", "is empty"),
    ("example.org/agents/support-bot", "does not start with 'spiffe://'"),
    ("https://example.org/agents/support-bot", "does not start with 'spiffe://'"),
    ("SPIFFE://example.org/agents/support-bot", "does not start with 'spiffe://'"),
    ("spiffe:/example.org/agents/support-bot", "does not start with 'spiffe://'"),
    ("spiffe:///agents/support-bot", "no trust domain"),
    ("spiffe://Example.org/agents/support-bot", "lowercase letters"),
    ("spiffe://exa mple.org/agents/support-bot", "lowercase letters"),
    ("spiffe://" + "a" * 256 + "/agents/support-bot", "longer than 255"),
    ("spiffe://user@example.org/agents/support-bot", "user info"),
    ("spiffe://example.org:8443/agents/support-bot", "port"),
    ("spiffe://example.org", "no path"),
    ("spiffe://example.org/", "empty path segment"),
    ("spiffe://example.org/agents/support-bot/", "empty path segment"),
    ("spiffe://example.org//agents/support-bot", "empty path segment"),
    ("spiffe://example.org/./agents/support-bot", "'.' or '..'"),
    ("spiffe://example.org/agents/../support-bot", "'.' or '..'"),
    ("spiffe://example.org/agents/support-bot?x=1", "query or a fragment"),
    ("spiffe://example.org/agents/support-bot#frag", "query or a fragment"),
    ("spiffe://example.org?x=1", "query or a fragment"),
    ("spiffe://example.org/agents/support%2Dbot", "path segment with characters"),
    ("spiffe://example.org/agents/support bot", "path segment with characters"),
    ("spiffe://example.org/agents/støtte-bot", "non-ASCII"),
    ("spiffe://example.org/" + "a" * 2040, "longer than 2048"),
])
def test_invalid_spiffe_ids_are_rejected(spiffe: SpiffeAuthenticator, spiffe_id: str,
                                         problem: str) -> None:
    with pytest.raises(Unauthenticated, match="is not a SPIFFE id") as info:
        spiffe.from_spiffe_id(spiffe_id)
    assert problem in str(info.value)


@pytest.mark.parametrize("value", [None, 42, b"spiffe://example.org/agents/support-bot"])
def test_spiffe_id_that_is_not_a_string_is_rejected(spiffe: SpiffeAuthenticator,
                                                    value: Any) -> None:
    with pytest.raises(Unauthenticated, match="a SPIFFE id is a string"):
        spiffe.from_spiffe_id(value)


def test_spiffe_id_from_another_trust_domain_is_rejected(spiffe: SpiffeAuthenticator) -> None:
    # registered (as foreign-bot), but not in this authenticator's trust domain
    with pytest.raises(Unauthenticated, match=r"in trust domain 'other\.org', not 'example\.org'"):
        spiffe.from_spiffe_id("spiffe://other.org/agents/support-bot")


def test_unregistered_spiffe_id_is_rejected(spiffe: SpiffeAuthenticator) -> None:
    with pytest.raises(Unauthenticated, match="names no registered agent"):
        spiffe.from_spiffe_id("spiffe://example.org/agents/ghost")


def test_suspended_agent_is_rejected_by_spiffe_id(spiffe: SpiffeAuthenticator,
                                                  registry: AgentRegistry) -> None:
    registry.suspend("support-bot", reason="rotating credentials")
    with pytest.raises(Unauthenticated, match=r"suspended \(rotating credentials\)"):
        spiffe.from_spiffe_id(SUPPORT_SPIFFE)


@pytest.mark.parametrize("trust_domain", ["", "Example.org", "example.org:443", "spiffe://example.org",
                                          "a" * 256, 42])
def test_bad_trust_domain_is_a_configuration_error(registry: AgentRegistry,
                                                   trust_domain: Any) -> None:
    with pytest.raises(ConfigurationError, match="trust_domain"):
        SpiffeAuthenticator(registry, trust_domain=trust_domain)


# -------------------------------------------------------------- mTLS peers
@dataclass(frozen=True)
class Peer:
    cert: dict[str, Any]
    der: bytes


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _issue(ca_key: ec.EllipticCurvePrivateKey, ca_name: x509.Name, subject: str,
           sans: list[x509.GeneralName], *, server: bool = False) -> tuple[x509.Certificate,
                                                                           ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(ca_name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(hours=1))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                                     else ExtendedKeyUsageOID.CLIENT_AUTH]),
                              critical=False)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                              critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   ca_key.public_key()), critical=False))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def _write(directory: Path, stem: str, cert: x509.Certificate,
           key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
    cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def _handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> Peer:
    """One real mTLS connection on localhost; the server side's view of the client certificate."""
    seen: dict[str, Any] = {}

    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(10)

        def serve() -> None:
            try:
                conn, _ = listener.accept()
                conn.settimeout(10)
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    seen["cert"] = tls.getpeercert()
                    seen["der"] = tls.getpeercert(binary_form=True)
                    tls.sendall(b"ok")
            except Exception as exc:  # reported by the assertion below
                seen["error"] = exc

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                client_ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.recv(2) == b"ok"
        thread.join(10)
    assert "error" not in seen, seen.get("error")
    return Peer(seen["cert"], seen["der"])


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Peer]:
    directory = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("example.org test CA")
    now = dt.datetime.now(dt.UTC)
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(hours=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, key_cert_sign=True, crl_sign=True,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    ca_path = directory / "ca.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))

    server_cert, server_key = _issue(ca_key, ca_name, "localhost",
                                     [x509.DNSName("localhost"),
                                      x509.IPAddress(ipaddress.ip_address("127.0.0.1"))], server=True)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(*_write(directory, "server", server_cert, server_key))
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    server_ctx.load_verify_locations(ca_path)

    uri = x509.UniformResourceIdentifier
    clients: dict[str, list[x509.GeneralName]] = {
        "support-bot": [uri(SUPPORT_SPIFFE)],
        "two-uris": [uri(SUPPORT_SPIFFE), uri("spiffe://example.org/agents/billing-bot")],
        "no-uri": [],
        "dns-only": [x509.DNSName("support-bot.example.org")],
        "other-domain": [uri("spiffe://other.org/agents/support-bot")],
    }
    out = {}
    for stem, sans in clients.items():
        cert, key = _issue(ca_key, ca_name, stem, sans)
        client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client_ctx.load_verify_locations(ca_path)
        client_ctx.load_cert_chain(*_write(directory, stem, cert, key))
        out[stem] = _handshake(server_ctx, client_ctx)
    return out


def test_mtls_peer_dict_maps_to_its_agent(spiffe: SpiffeAuthenticator,
                                          peers: dict[str, Peer]) -> None:
    cert = peers["support-bot"].cert
    assert ("URI", SUPPORT_SPIFFE) in cert["subjectAltName"]
    assert spiffe.from_peer_certificate(cert) == SUPPORT


def test_mtls_peer_der_maps_to_its_agent(spiffe: SpiffeAuthenticator,
                                         peers: dict[str, Peer]) -> None:
    assert spiffe.from_peer_certificate(peers["support-bot"].der) == SUPPORT


@pytest.mark.parametrize("form", ["cert", "der"])
def test_mtls_peer_with_two_uri_sans_is_rejected(spiffe: SpiffeAuthenticator,
                                                 peers: dict[str, Peer], form: str) -> None:
    with pytest.raises(Unauthenticated, match=r"2 URI SANs; an X\.509-SVID has exactly one"):
        spiffe.from_peer_certificate(getattr(peers["two-uris"], form))


@pytest.mark.parametrize("peer", ["no-uri", "dns-only"])
@pytest.mark.parametrize("form", ["cert", "der"])
def test_mtls_peer_without_uri_san_is_rejected(spiffe: SpiffeAuthenticator,
                                               peers: dict[str, Peer], peer: str, form: str) -> None:
    with pytest.raises(Unauthenticated, match="no URI SAN"):
        spiffe.from_peer_certificate(getattr(peers[peer], form))


@pytest.mark.parametrize("form", ["cert", "der"])
def test_mtls_peer_from_another_trust_domain_is_rejected(spiffe: SpiffeAuthenticator,
                                                         peers: dict[str, Peer], form: str) -> None:
    with pytest.raises(Unauthenticated, match=r"trust domain 'other\.org'"):
        spiffe.from_peer_certificate(getattr(peers["other-domain"], form))


def test_unverified_peer_is_rejected(spiffe: SpiffeAuthenticator) -> None:
    with pytest.raises(Unauthenticated, match="peer certificate was not verified"):
        spiffe.from_peer_certificate({})


@pytest.mark.parametrize(("cert", "match"), [
    (None, "presented none"), (b"", "is empty"), (b"\x30\x03garbage", "not a readable DER"),
    ("spiffe://example.org/agents/support-bot", "expected getpeercert"),
    ({"subjectAltName": "URI:spiffe://example.org/agents/support-bot"}, "malformed"),
    ({"subjectAltName": (("URI",),)}, "malformed"),
    ({"subject": ((("commonName", "support-bot"),),)}, "no URI SAN"),
], ids=repr)
def test_unreadable_peer_certificate_is_rejected(spiffe: SpiffeAuthenticator, cert: Any,
                                                 match: str) -> None:
    with pytest.raises(Unauthenticated, match=match):
        spiffe.from_peer_certificate(cert)
