"""OIDC bearer tokens verified against a JWKS served by a real local HTTP server (keys generated here)."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from flywheel.config import load_settings
from flywheel.security_config import OIDCConfig
from starter.auth import Authenticator, AuthError, Role
from starter.auth.oidc import IssuerUnavailableError, JWTVerifier, TokenError
from tests.emulators.openai_scripted import free_port
from tests.emulators.threaded_server import ThreadedServer

AUDIENCE = "flywheel-api"


class Issuer:
    """A JWKS endpoint whose key set the test controls (rotation), counting fetches."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/realms/test"
        self.keys: dict[str, Any] = {}
        self.fetches = 0
        self.add_key("k1")
        self._server = ThreadedServer(Starlette(routes=[Route("/realms/test/.well-known/jwks.json", self._jwks)]),
                                      self.port, "JWKS server")

    def add_key(self, kid: str, kind: str = "rsa") -> None:
        self.keys[kid] = (rsa.generate_private_key(public_exponent=65537, key_size=2048) if kind == "rsa"
                          else ec.generate_private_key(ec.SECP256R1()))

    def _jwks(self, _request: Any) -> JSONResponse:
        self.fetches += 1
        out = []
        for kid, key in self.keys.items():
            algo = RSAAlgorithm if isinstance(key, rsa.RSAPrivateKey) else ECAlgorithm
            jwk = json.loads(algo.to_jwk(key.public_key()))
            out.append({**jwk, "kid": kid, "use": "sig"})
        return JSONResponse({"keys": out})

    def token(self, kid: str = "k1", **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": self.url, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 300,
                "roles": ["reviewer"], **claims}
        body = {k: v for k, v in body.items() if v is not None}
        key = self.keys[kid]
        alg = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
        return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})


@pytest.fixture(scope="module")
def issuer():
    server = Issuer()
    server._server.start_server()
    yield server
    server._server.stop()


@pytest.fixture
def verifier(issuer):
    return JWTVerifier(OIDCConfig(issuer=issuer.url, audience=AUDIENCE,
                                  role_map={"flywheel-approvers": "reviewer"}), refresh_cooldown_s=0)


async def test_valid_token_gives_principal_with_roles(verifier, issuer):
    principal = await verifier.verify(issuer.token())
    assert principal.name == "alice" and principal.roles == {Role.reviewer} and principal.label == "oidc:alice"
    mapped = await verifier.verify(issuer.token(roles=["flywheel-approvers", "other-app-admin"]))
    assert mapped.roles == {Role.reviewer}  # mapped; unknown roles ignored


@pytest.mark.parametrize(("claims", "why"), [
    ({"exp": int(time.time()) - 3600}, "expired"),
    ({"aud": "someone-else"}, "audience"),
    ({"iss": "http://evil.example/realms/test"}, "issuer"),
    ({"exp": None}, "exp"),
])
async def test_bad_claims_are_refused(verifier, issuer, claims, why):
    with pytest.raises(TokenError, match=f"(?i){why}"):
        await verifier.verify(issuer.token(**claims))


async def test_forged_and_confused_tokens_are_refused(verifier, issuer):
    good = issuer.token()
    header, _body, sig = good.split(".")
    tampered_body = jwt.utils.base64url_encode(
        json.dumps({**jwt.decode(good, options={"verify_signature": False}), "roles": ["admin"]}).encode()).decode()
    with pytest.raises(TokenError):
        await verifier.verify(f"{header}.{tampered_body}.{sig}")
    # alg confusion: HS256 "signed" with the public key's PEM must not pass
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(TokenError):
        await verifier.verify(jwt.encode({"iss": issuer.url, "aud": AUDIENCE, "sub": "x", "exp": time.time() + 60},
                                         "k" * 32, algorithm="HS256", headers={"kid": "k1"}))
    with pytest.raises(TokenError):  # signed by a key the issuer never published, claiming its kid
        await verifier.verify(jwt.encode({"iss": issuer.url, "aud": AUDIENCE, "sub": "x", "exp": time.time() + 60},
                                         stranger, algorithm="RS256", headers={"kid": "k1"}))
    with pytest.raises(TokenError):
        await verifier.verify("not-a-jwt")


async def test_issuer_key_rotation_is_followed(verifier, issuer):
    await verifier.verify(issuer.token("k1"))
    issuer.add_key("k2-ec", kind="ec")  # the issuer rotates: a new key id appears
    before = issuer.fetches
    principal = await verifier.verify(issuer.token("k2-ec"))
    assert principal.name == "alice" and issuer.fetches == before + 1


async def test_unreachable_issuer_is_unavailable_not_accepted():
    port = free_port()  # nothing listens here
    down = JWTVerifier(OIDCConfig(issuer=f"http://127.0.0.1:{port}", audience=AUDIENCE))
    with pytest.raises(IssuerUnavailableError):
        await down.verify(jwt.encode({"sub": "x"}, rsa.generate_private_key(public_exponent=65537, key_size=2048),
                                     algorithm="RS256", headers={"kid": "k1"}))


async def test_authenticator_routes_bearer_tokens_to_oidc(tmp_path, issuer):
    settings = load_settings(environ={}, overrides={
        "platform": {"data_dir": str(tmp_path)},
        "security": {"oidc": {"issuer": issuer.url, "audience": AUDIENCE}}})
    auth = Authenticator.from_settings(settings)
    assert (await auth.authenticate(issuer.token(roles="viewer operator"), "10.0.0.9")).roles == {
        Role.viewer, Role.operator}
    with pytest.raises(AuthError) as err:
        await auth.authenticate(issuer.token(aud="x"), "10.0.0.9")
    assert err.value.status_code == 401


def test_symmetric_algorithms_cannot_be_configured():
    with pytest.raises(ValueError, match="asymmetric"):
        OIDCConfig(issuer="https://i", audience="a", algorithms=["HS256"])


async def test_made_up_key_ids_cannot_flood_the_issuer(issuer):
    guarded = JWTVerifier(OIDCConfig(issuer=issuer.url, audience=AUDIENCE))  # default refetch cooldown
    await guarded.verify(issuer.token("k1"))
    before = issuer.fetches
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for i in range(5):
        forged = jwt.encode({"iss": issuer.url, "aud": AUDIENCE, "sub": "x", "exp": time.time() + 60}, stranger,
                            algorithm="RS256", headers={"kid": f"made-up-{i}"})
        with pytest.raises(TokenError):
            await guarded.verify(forged)
    assert issuer.fetches - before <= 1
