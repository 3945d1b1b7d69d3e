"""Bearer tokens: who a token names, every way it is refused, keys on disk, dev credentials.

Tokens are minted for real with ES256/RS256/HS256 keys; times are driven by the
verifier's ``clock`` so expiry and leeway are tested at their exact boundary.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import stat
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from meshwright.mesh.auth import (
    ANONYMOUS_ADMIN,
    AUDIENCE,
    MAX_TOKEN_BYTES,
    Principal,
    Role,
    TokenExpired,
    TokenInvalid,
    TokenIssuer,
    TokenMalformed,
    TokenMissing,
    TokenVerifier,
    algorithm_of_private_key,
    algorithm_of_public_key,
    bearer_token,
    generate_key_pair,
    issuer_from_file,
    verifier_from_files,
    write_secret,
)
from meshwright.mesh.config import MeshConfig
from meshwright.mesh.errors import MeshError, Unauthenticated, grpc_code
from meshwright.mesh.security import DevCredentials, Security, config_dir, insecure_pipeline
from tests.support_auth import test_keys

T0 = 1_700_000_000.0
"""A fixed 'now' for verifiers driven by a fake clock."""


class Clock:
    """A settable clock (seconds since the epoch)."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def claims(**over: Any) -> dict[str, Any]:
    """Valid claims at T0 (one hour left), with ``over`` applied; a None value drops a claim."""
    base: dict[str, Any] = {
        "iss": "meshwright",
        "aud": AUDIENCE,
        "sub": "alice",
        "role": "client",
        "iat": int(T0),
        "exp": int(T0) + 3600,
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def sign(payload: dict[str, Any], *, key: Any = None, alg: str = "ES256", **kw: Any) -> str:
    """A token signed with the session's test key (or ``key``)."""
    return jwt.encode(payload, test_keys().private_pem if key is None else key, algorithm=alg, **kw)


def verifier(clock: Clock | None = None, **kw: Any) -> TokenVerifier:
    return TokenVerifier(test_keys().public_pem, clock=clock or Clock(), **kw)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge_hs256(payload: dict[str, Any], secret: bytes) -> str:
    """An HS256 token made by hand (PyJWT refuses to use a PEM key as an HMAC secret)."""
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64url(json.dumps(payload).encode())
    sig = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64url(sig)}"


# -- principals ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "admin", "trusted"),
    [
        (Role.ADMIN, True, True),
        (Role.SERVICE, False, True),
        (Role.AGENT, False, False),
        (Role.CLIENT, False, False),
    ],
)
def test_principal_predicates(role: Role, admin: bool, trusted: bool) -> None:
    who = Principal(role, "x")
    assert who.name == f"{role.value}:x"
    assert who.is_admin is admin
    assert who.is_trusted is trusted


def test_anonymous_admin_is_an_admin() -> None:
    assert ANONYMOUS_ADMIN.name == "admin:anonymous" and ANONYMOUS_ADMIN.is_admin


# -- verification ---------------------------------------------------------------------


def test_valid_es256_token_names_its_principal() -> None:
    assert verifier().verify(sign(claims())) == Principal(Role.CLIENT, "alice")


def test_token_issued_by_token_issuer_verifies_as_each_role() -> None:
    issuer = TokenIssuer(
        serialization.load_pem_private_key(test_keys().private_pem, password=None),
        clock=Clock(),
    )
    for role in Role:
        assert verifier().verify(issuer.issue(role, "s1")) == Principal(role, "s1")


@pytest.mark.parametrize(
    ("exp_offset", "accepted"),
    [(-10, True), (-29, True), (-30, False), (-31, False)],
    ids=["within-leeway", "last-second-of-leeway", "leeway-ends", "beyond-leeway"],
)
def test_expiry_with_a_30s_leeway(exp_offset: int, accepted: bool) -> None:
    token = sign(claims(exp=int(T0) + exp_offset, iat=int(T0) - 3600))
    v = verifier(leeway_s=30)
    if accepted:
        assert v.verify(token).subject == "alice"
    else:
        with pytest.raises(TokenExpired):
            v.verify(token)


@pytest.mark.parametrize("name", ["nbf", "iat"])
def test_not_yet_valid_beyond_leeway_is_invalid(name: str) -> None:
    v = verifier(leeway_s=30)
    assert v.verify(sign(claims(**{name: int(T0) + 30}))).subject == "alice"
    with pytest.raises(TokenInvalid, match="not valid yet"):
        v.verify(sign(claims(**{name: int(T0) + 31})))


@pytest.mark.parametrize(
    "bad",
    [
        {"aud": "someone-else"},
        {"sub": None},
        {"exp": None},
        {"aud": None},
        {"role": None},
        {"role": "root"},
        {"sub": ""},
        {"sub": "x" * 129},
        {"exp": "soon"},
        {"exp": True},
    ],
    ids=[
        "wrong-audience",
        "missing-sub",
        "missing-exp",
        "missing-aud",
        "missing-role",
        "unknown-role",
        "empty-sub",
        "sub-129-chars",
        "exp-not-a-number",
        "exp-a-bool",
    ],
)
def test_bad_claims_are_invalid(bad: dict[str, Any]) -> None:
    with pytest.raises(TokenInvalid):
        verifier().verify(sign(claims(**bad)))


def test_subject_of_128_chars_is_accepted() -> None:
    assert verifier().verify(sign(claims(sub="x" * 128))).subject == "x" * 128


def test_token_signed_by_another_key_is_invalid() -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(TokenInvalid):
        verifier().verify(sign(claims(), key=other))


def test_alg_none_is_invalid() -> None:
    token = jwt.encode(claims(role="admin"), None, algorithm="none")  # type: ignore[arg-type]
    with pytest.raises(TokenInvalid):
        verifier().verify(token)


def test_hs256_forged_with_the_public_key_pem_is_invalid() -> None:
    """The key-confusion attack: an HMAC over the (public) PEM must not pass as ES256."""
    token = forge_hs256(claims(role="admin"), test_keys().public_pem)
    with pytest.raises(TokenInvalid):
        verifier().verify(token)


@pytest.mark.parametrize(
    "garbage",
    ["", "abc", "a.b.c", "..", "é.é.é", b64url(b"[]") + ".e30.", "x" * (MAX_TOKEN_BYTES + 1)],
)
def test_garbage_tokens_are_invalid(garbage: str) -> None:
    with pytest.raises(TokenInvalid):
        verifier().verify(garbage)


def _token_of_length(n: int) -> str:
    """A valid token exactly ``n`` characters long (padded by a claim and a header)."""
    for kid in range(4):  # base64 skips lengths = 1 mod 4; a header pad shifts past them
        headers = {"kid": "k" * kid} if kid else None
        pad = 0
        while True:
            token = sign(claims(pad="p" * pad), headers=headers)
            if len(token) == n:
                return token
            if len(token) > n:
                break
            pad += max(1, (n - len(token)) * 3 // 4)
    raise AssertionError(f"no token of length {n}")


def test_token_length_limit() -> None:
    v = verifier()
    assert v.verify(_token_of_length(MAX_TOKEN_BYTES)).subject == "alice"
    with pytest.raises(TokenInvalid, match="too long"):
        v.verify(_token_of_length(MAX_TOKEN_BYTES + 1))


def test_verifier_refuses_no_algorithm_and_none() -> None:
    with pytest.raises(ValueError, match="at least one"):
        TokenVerifier(test_keys().public_pem, algorithms=())
    with pytest.raises(ValueError, match="none"):
        TokenVerifier(test_keys().public_pem, algorithms=("ES256", "None"))


def test_token_errors_are_unauthenticated_with_their_reason() -> None:
    for cls, reason in [
        (TokenMissing, "TOKEN_MISSING"),
        (TokenMalformed, "TOKEN_MALFORMED"),
        (TokenInvalid, "TOKEN_INVALID"),
        (TokenExpired, "TOKEN_EXPIRED"),
    ]:
        err = cls("x")
        assert isinstance(err, Unauthenticated) and err.reason == reason
        assert grpc_code(err).name == "UNAUTHENTICATED"


# -- HS256, only when asked for --------------------------------------------------------


SECRET = "s" * 32


def test_hs256_accepted_only_by_a_verifier_built_for_it() -> None:
    token = jwt.encode(claims(exp=2**40), SECRET, algorithm="HS256")
    assert verifier_from_files(hs256_secret=SECRET).verify(token).subject == "alice"
    with pytest.raises(TokenInvalid):
        verifier().verify(token)  # an ES256 verifier


def test_hs256_verifier_refuses_es256_tokens() -> None:
    with pytest.raises(TokenInvalid):
        verifier_from_files(hs256_secret=SECRET).verify(sign(claims(exp=2**40)))


def test_hs256_secret_of_31_bytes_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        verifier_from_files(hs256_secret="s" * 31)


def test_verifier_from_files_needs_exactly_one_key(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no key"):
        verifier_from_files()
    with pytest.raises(ValueError, match="not both"):
        verifier_from_files(public_key=str(test_keys().public_key_file), hs256_secret=SECRET)


def test_verifier_from_public_key_file() -> None:
    v = verifier_from_files(public_key=str(test_keys().public_key_file))
    assert v.verify(sign(claims(exp=2**40))).subject == "alice"


def test_rsa_keys_give_rs256(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert algorithm_of_public_key(public) == "RS256"
    assert algorithm_of_private_key(private) == "RS256"
    write_secret(tmp_path / "rsa.pem", private)
    write_secret(tmp_path / "rsa.pub.pem", public)
    token = issuer_from_file(str(tmp_path / "rsa.pem")).issue("service", "mesh")
    v = verifier_from_files(public_key=str(tmp_path / "rsa.pub.pem"))
    assert v.verify(token) == Principal(Role.SERVICE, "mesh")


def test_ec_keys_give_es256() -> None:
    assert algorithm_of_public_key(test_keys().public_pem) == "ES256"
    assert algorithm_of_private_key(test_keys().private_pem) == "ES256"


def test_other_key_types_are_refused() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(ValueError, match="EC .* or RSA"):
        algorithm_of_public_key(public)


# -- the cache ---------------------------------------------------------------------------


def test_cached_token_is_not_accepted_past_its_expiry() -> None:
    clock = Clock()
    v = verifier(clock, leeway_s=30, cache_ttl_s=10_000)
    token = sign(claims(exp=int(T0) + 100))
    assert v.verify(token).subject == "alice"  # cached now
    clock.now = T0 + 129.5  # expiry + leeway not reached yet
    assert v.verify(token).subject == "alice"
    clock.now = T0 + 130
    with pytest.raises(TokenExpired):
        v.verify(token)


def test_cache_is_bounded_and_keeps_the_recently_used() -> None:
    v = verifier(cache_size=2)
    a, b, c = (sign(claims(sub=s)) for s in "abc")
    v.verify(a)
    v.verify(b)
    v.verify(a)  # a is now the most recently used
    v.verify(c)
    # The cache is invisible through the API (a hit answers what a fresh check
    # would), so its bound is checked on the structure itself.
    assert list(v._cache) == [a, c]


def test_a_refused_token_is_not_cached() -> None:
    v = verifier()
    with pytest.raises(TokenInvalid):
        v.verify(sign(claims(role="root")))
    assert len(v._cache) == 0


# -- bearer_token -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "token"),
    [
        ([("authorization", "Bearer x")], "x"),
        ([("authorization", "bearer x")], "x"),
        ([("authorization", "  Bearer   x  ")], "x"),
        ([("authorization", b"Bearer x")], "x"),
        ([("x-request-id", "r1"), ("authorization", "Bearer t")], "t"),
        ([("x-request-id", "r1")], None),
        ([], None),
        (None, None),
    ],
)
def test_bearer_token(metadata: Any, token: str | None) -> None:
    assert bearer_token(metadata) == token


@pytest.mark.parametrize("value", ["Basic x", "Bearer ", "Bearer", "", "Token x"])
def test_bearer_token_malformed(value: str) -> None:
    with pytest.raises(TokenMalformed):
        bearer_token([("authorization", value)])


# -- issuing -------------------------------------------------------------------------------


def test_issue_sets_every_claim() -> None:
    issuer = TokenIssuer(test_keys().private_pem, clock=Clock())
    token = issuer.issue("agent", "a1", ttl_s=90)
    got = jwt.decode(token, options={"verify_signature": False})
    assert got == {
        "iss": "meshwright",
        "aud": "meshwright",
        "sub": "a1",
        "role": "agent",
        "iat": int(T0),
        "exp": int(T0) + 90,
    }


@pytest.mark.parametrize(
    ("subject", "ttl_s", "error"),
    [
        ("", 60.0, "subject"),
        ("x" * 129, 60.0, "subject"),
        ("a", 0.0, "ttl_s"),
        ("a", -1.0, "ttl_s"),
    ],
)
def test_issue_validation(subject: str, ttl_s: float, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        TokenIssuer(test_keys().private_pem).issue("client", subject, ttl_s=ttl_s)


def test_issue_at_the_bounds() -> None:
    issuer = TokenIssuer(test_keys().private_pem)
    assert verifier_from_files(public_key=str(test_keys().public_key_file)).verify(
        issuer.issue("client", "x" * 128, ttl_s=1)
    ) == Principal(Role.CLIENT, "x" * 128)


def test_issue_refuses_an_unknown_role() -> None:
    with pytest.raises(ValueError):
        TokenIssuer(test_keys().private_pem).issue("root", "a")


# -- keys on disk ----------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_generate_key_pair_gives_a_matching_p256_pair() -> None:
    private, public = generate_key_pair()
    key = serialization.load_pem_private_key(private, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    assert (
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        == public
    )
    assert generate_key_pair()[0] != private  # a new key each time
    token = TokenIssuer(key).issue("admin", "root")
    assert TokenVerifier(public).verify(token) == Principal(Role.ADMIN, "root")


def test_write_secret_is_owner_only(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "dir" / "secret"
    write_secret(target, "text")
    assert target.read_bytes() == b"text"
    assert _mode(target) == 0o600
    assert _mode(target.parent) & 0o077 == 0
    assert [p.name for p in target.parent.iterdir()] == ["secret"]  # no temp file left


def test_write_secret_tightens_an_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "secret"
    target.write_bytes(b"old")
    target.chmod(0o644)
    write_secret(target, b"new")
    assert target.read_bytes() == b"new" and _mode(target) == 0o600


# -- development credentials -------------------------------------------------------------------


def _files(creds: DevCredentials) -> list[Path]:
    return [creds.private_key, creds.public_key, creds.admin_token_file, creds.client_token_file]


def test_dev_credentials_created_owner_only(tmp_path: Path) -> None:
    creds = DevCredentials.ensure(tmp_path / "mw", client_subject="bob")
    for f in _files(creds):
        assert _mode(f) == 0o600, f
    v = verifier_from_files(public_key=str(creds.public_key))
    assert v.verify(creds.admin_token) == Principal(Role.ADMIN, "admin")
    assert v.verify(creds.client_token) == Principal(Role.CLIENT, "bob")
    assert v.verify(creds.issuer().issue("agent", "a1")) == Principal(Role.AGENT, "a1")


def test_dev_credentials_second_call_reuses_key_and_tokens(tmp_path: Path) -> None:
    first = DevCredentials.ensure(tmp_path)
    before = [f.read_bytes() for f in _files(first)]
    second = DevCredentials.ensure(tmp_path)
    assert [f.read_bytes() for f in _files(second)] == before


def test_dev_credentials_remint_a_token_that_no_longer_verifies(tmp_path: Path) -> None:
    creds = DevCredentials.ensure(tmp_path)
    admin = creds.admin_token
    foreign = TokenIssuer(ec.generate_private_key(ec.SECP256R1())).issue("client", "dev")
    write_secret(creds.client_token_file, foreign)
    DevCredentials.ensure(tmp_path)
    v = verifier_from_files(public_key=str(creds.public_key))
    assert creds.client_token != foreign
    assert v.verify(creds.client_token) == Principal(Role.CLIENT, "dev")
    assert creds.admin_token == admin  # the still-valid one is kept


def test_dev_credentials_remint_a_token_expiring_within_a_day(tmp_path: Path) -> None:
    creds = DevCredentials.ensure(tmp_path)
    short = creds.issuer().issue("admin", "admin", ttl_s=3600)
    write_secret(creds.admin_token_file, short)
    DevCredentials.ensure(tmp_path)
    assert creds.admin_token != short
    got = jwt.decode(creds.admin_token, options={"verify_signature": False})
    assert got["exp"] - got["iat"] > 86_400


def test_dev_credentials_new_key_replaces_tokens_of_the_old_one(tmp_path: Path) -> None:
    creds = DevCredentials.ensure(tmp_path)
    old_key, old_admin = creds.private_key.read_bytes(), creds.admin_token
    creds.public_key.unlink()
    DevCredentials.ensure(tmp_path)
    assert creds.private_key.read_bytes() != old_key
    assert creds.admin_token != old_admin
    v = verifier_from_files(public_key=str(creds.public_key))
    assert v.verify(creds.admin_token).role is Role.ADMIN
    with pytest.raises(TokenInvalid):
        v.verify(old_admin)


# -- Security at the composition root ----------------------------------------------------------


def test_security_with_auth_off_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="meshwright.mesh.security"):
        sec = Security.from_config(MeshConfig(insecure_no_auth=True))
    assert not sec.pipeline.auth_enabled and sec.token is None
    assert "AUTHENTICATION IS OFF" in caplog.text
    assert not insecure_pipeline().auth_enabled


def test_security_with_auth_on_needs_a_key() -> None:
    with pytest.raises(ValueError, match="no key to verify"):
        Security.from_config(MeshConfig())


def test_security_holding_the_signing_key_mints_its_service_token() -> None:
    keys = test_keys()
    sec = Security.from_config(
        MeshConfig(
            auth_public_key=str(keys.public_key_file), auth_private_key=str(keys.private_key_file)
        ),
        service_subject="node-1",
    )
    assert sec.pipeline.auth_enabled and sec.issuer is not None and sec.tls is None
    assert sec.token is not None
    assert sec.pipeline.authenticate([("authorization", f"Bearer {sec.token}")]) == Principal(
        Role.SERVICE, "node-1"
    )


def test_security_uses_the_configured_token_and_rate_limit() -> None:
    keys = test_keys()
    sec = Security.from_config(
        MeshConfig(
            auth_public_key=str(keys.public_key_file),
            token="given",
            rate_limit_rps=7,
            rate_limit_burst=3,
        )
    )
    assert sec.token == "given" and sec.issuer is None
    assert sec.pipeline.limiter is not None
    assert (sec.pipeline.limiter.limit.rate_per_s, sec.pipeline.limiter.limit.burst) == (7, 3)
    assert sec.pipeline.verify_limiter is not None
    assert sec.pipeline.verify_limiter.limit.burst == 30  # ten times the call budget
    off = Security.from_config(MeshConfig(auth_hs256_secret=SECRET, rate_limit_rps=0))
    assert off.pipeline.limiter is None and off.pipeline.verify_limiter is None
    # With only a shared secret, the process mints its own service token with it.
    assert off.token is not None
    assert off.pipeline.authenticate([("authorization", f"Bearer {off.token}")]).role == "service"
    token = jwt.encode(claims(exp=2**40), SECRET, algorithm="HS256")
    assert off.pipeline.authenticate([("authorization", f"Bearer {token}")]).subject == "alice"


def test_config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert config_dir(MeshConfig(config_dir=str(tmp_path))) == tmp_path
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert config_dir() == tmp_path / "xdg" / "meshwright"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    assert config_dir(MeshConfig()) == Path.home() / ".config" / "meshwright"


def test_authenticate_without_token_and_with_auth_off() -> None:
    from meshwright.mesh.pipeline import Pipeline

    on = Pipeline(verifier=verifier())
    with pytest.raises(TokenMissing):
        on.authenticate([("x-request-id", "r")])
    with pytest.raises(TokenMalformed):
        on.authenticate([("authorization", "Basic x")])
    # Auth off: whatever the caller sends, it is the anonymous admin.
    assert Pipeline(verifier=None).authenticate([("authorization", "junk")]) == ANONYMOUS_ADMIN
    assert isinstance(TokenMissing("x"), MeshError)
