"""Tokens, origins and TLS of the live stream (issue 6): every refusal happens before the
WebSocket upgrade, as an HTTP status."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time

import jwt
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidMessage, InvalidStatus

from pitbox.cli import main
from pitbox.live import LiveClient, LiveError, StreamServer, create_token, new_secret, verify_token
from pitbox.live.auth import ENV_SECRET, AuthError, is_loopback
from pitbox.live.testing import open_log, run

pytestmark = pytest.mark.timeout(60)
SECRET = new_secret()


@pytest.fixture(scope="module")
def server():
    s = StreamServer(port=0, token_secret=SECRET).start()
    yield s
    s.stop()




async def status_of(url: str, **kwargs) -> int:
    """101 when the upgrade happened, else the HTTP status the server refused with."""
    try:
        async with connect(url, proxy=None, open_timeout=5, **kwargs) as ws:
            return ws.response.status_code
    except InvalidStatus as exc:
        return exc.response.status_code
    except InvalidMessage:
        return 0  # no HTTP answer at all (plain ws to a wss server)


def bearer(token: str) -> dict[str, str]:
    return {"additional_headers": {"Authorization": f"Bearer {token}"}}


def test_valid_subscriber_token_in_header_is_accepted(server):
    assert run(status_of(server.url, **bearer(create_token(SECRET, "subscriber")))) == 101


def test_no_token_is_refused_with_401(server):
    async def scenario():
        try:
            async with connect(server.url, proxy=None):
                pass
        except InvalidStatus as exc:
            return exc.response
    response = run(scenario())
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert b"token is required" in response.body


def test_forged_signature_is_refused(server):
    forged = create_token(new_secret(), "subscriber")
    assert run(status_of(server.url, **bearer(forged))) == 401


def test_tampered_claims_are_refused(server):
    header, payload, signature = create_token(SECRET, "publisher").split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["role"] = "subscriber"
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert run(status_of(server.url, **bearer(f"{header}.{payload}.{signature}"))) == 401


def test_unsigned_alg_none_token_is_refused(server):
    unsigned = jwt.encode({"role": "subscriber", "iat": int(time.time()), "iss": "pitbox"}, None, algorithm="none")
    assert run(status_of(server.url, **bearer(unsigned))) == 401


def test_expired_token_is_refused(server):
    expired = create_token(SECRET, "subscriber", ttl_s=60, now=time.time() - 3600)
    with pytest.raises(AuthError, match="expired"):
        verify_token(SECRET, expired, "subscriber")
    assert run(status_of(server.url, **bearer(expired))) == 401


def test_wrong_role_is_refused_with_403(server):
    assert run(status_of(server.url, **bearer(create_token(SECRET, "publisher")))) == 403


def test_garbage_token_is_refused(server):
    assert run(status_of(server.url, **bearer("not.a.jwt"))) == 401


def test_browser_token_in_query_works(server):
    token = create_token(SECRET, "subscriber")
    assert run(status_of(f"{server.url}/?token={token}")) == 101
    assert run(status_of(f"{server.url}/stream?token={token}")) == 101
    assert run(status_of(f"{server.url}/?token=wrong")) == 401


def test_browser_token_as_subprotocol_works(server):
    token = create_token(SECRET, "subscriber")

    async def scenario():
        async with connect(server.url, proxy=None, subprotocols=["pitbox.v1", f"bearer.{token}"]) as ws:
            hello = json.loads(await ws.recv())
            return ws.subprotocol, hello

    subprotocol, hello = run(scenario())
    assert subprotocol == "pitbox.v1", "the server answers with pitbox.v1 and never echoes the token"
    assert hello["type"] == "hello" and hello["role"] == "subscriber"


def test_frames_flow_with_a_token(server):
    token = create_token(SECRET, "subscriber")

    async def scenario():
        log = await open_log(server.url, token=token, subscribe={"channels": ["Speed"], "rate": 60})
        await log.wait_for(lambda lg: lg.of("subscribed"))
        server.publish_frame(1, 0.5, {"Speed": 12.5})
        await log.wait_for(lambda lg: lg.frames())
        return log.frames()[0]

    assert run(scenario())["values"] == {"Speed": 12.5}


def test_origin_allow_list():
    async def scenario(s):
        return [await status_of(s.url, origin=o) for o in ("http://localhost:8888", "https://evil.example")] + \
               [await status_of(s.url)]

    with StreamServer(port=0) as s:  # default: loopback pages and programs
        assert run(scenario(s)) == [101, 403, 101]
    with StreamServer(port=0, origins=["https://evil.example"]) as s:
        assert run(scenario(s)) == [403, 101, 101]
    with StreamServer(port=0, origins=["*"]) as s:
        assert run(scenario(s)) == [101, 101, 101]


def test_secret_from_environment(monkeypatch):
    env_secret = new_secret()
    monkeypatch.setenv(ENV_SECRET, env_secret)
    with StreamServer(port=0) as s:
        assert s.auth_required
        assert run(status_of(s.url)) == 401
        assert run(status_of(s.url, **bearer(create_token(None, "subscriber")))) == 101


def test_short_secret_is_refused():
    with pytest.raises(LiveError, match="at least 32 bytes"):
        StreamServer(port=0, token_secret="short")


@pytest.mark.parametrize("host", ["0.0.0.0", "", "192.168.1.20", "::", "example.com"])
def test_non_loopback_bind_without_secret_is_refused(host, monkeypatch):
    monkeypatch.delenv(ENV_SECRET, raising=False)
    with pytest.raises(LiveError, match="needs a token secret"):
        StreamServer(host=host, port=0)
    StreamServer(host=host, port=0, token_secret=SECRET)  # allowed with a secret (not started here)


def test_loopback_hosts():
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST"))
    assert not any(is_loopback(h) for h in (None, "", "0.0.0.0", "::", "10.0.0.1", "localhost.example.com"))


def test_client_raises_on_refusal_instead_of_retrying(server):
    async def scenario():
        async for _ in LiveClient(server.url, token=create_token(new_secret(), "subscriber")):
            pass

    with pytest.raises(LiveError, match="HTTP 401"):
        run(scenario())


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-made certificate for 127.0.0.1 and localhost (openssl CLI; the
    cryptography package is not installed in this environment)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl not found to make a test certificate")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


def test_wss_with_a_self_made_certificate(certificate):
    cert, key = certificate
    token = create_token(SECRET, "subscriber")

    async def scenario(s):
        messages = []
        async with LiveClient(s.url, token=token, channels=["Speed"], rate=60, ssl=cert, max_retries=0) as client:
            async for msg in client:
                messages.append(msg)
                if msg["type"] == "subscribed":
                    s.publish_frame(7, 1.25, {"Speed": 33.0, "RPM": 5000.0})
                if msg["type"] == "frame":
                    break
        plain = await status_of(s.url.replace("wss://", "ws://"))
        return messages, plain

    with StreamServer(port=0, token_secret=SECRET, certfile=cert, keyfile=key) as s:
        assert s.url.startswith("wss://127.0.0.1:")
        messages, plain = run(scenario(s))
    assert messages[-1]["values"] == {"Speed": 33.0} and messages[-1]["tick"] == 7
    assert plain == 0, "plain ws gets no HTTP answer from a wss server"


def test_wss_client_without_trust_is_refused(certificate):
    cert, key = certificate

    async def scenario(s):
        async for _ in LiveClient(s.url, ssl=True, max_retries=0):
            pass

    with StreamServer(port=0, certfile=cert, keyfile=key) as s, pytest.raises(LiveError, match="cannot connect"):
        run(scenario(s))


def test_bad_certificate_paths_are_clear_errors(tmp_path):
    with pytest.raises(LiveError, match="not found"):
        StreamServer(port=0, certfile=tmp_path / "missing.pem")
    (tmp_path / "junk.pem").write_text("junk")
    with pytest.raises(LiveError, match="expected a PEM certificate"):
        StreamServer(port=0, certfile=tmp_path / "junk.pem")
    with pytest.raises(LiveError, match="without certfile"):
        StreamServer(port=0, keyfile=tmp_path / "junk.pem")


def test_cli_token_create_and_secret(capsys):
    assert main(["token", "secret"]) == 0
    secret = capsys.readouterr().out.strip()
    assert len(secret) == 64
    assert main(["token", "create", "--role", "publisher", "--subject", "alice", "--ttl", "120",
                 "--token-secret", secret]) == 0
    claims = verify_token(secret, capsys.readouterr().out.strip(), "publisher")
    assert claims["sub"] == "alice" and claims["exp"] - claims["iat"] == 120
    assert main(["token", "create", "--role", "subscriber", "--ttl", "0", "--token-secret", secret]) == 0
    assert "exp" not in verify_token(secret, capsys.readouterr().out.strip(), "subscriber")
    assert main(["token", "create", "--role", "subscriber", "--token-secret", "short"]) == 2
    assert "at least 32 bytes" in capsys.readouterr().err


def test_cli_token_scopes_for_commands(capsys):
    secret = "k" * 32
    assert main(["token", "create", "--role", "subscriber", "--scope", "command:alice", "--scope", "command:bob",
                 "--token-secret", secret]) == 0
    claims = verify_token(secret, capsys.readouterr().out.strip(), "subscriber")
    assert claims["scope"] == "command:alice command:bob"
    for bad in ("drive", "command:", "command:a b", "command:" + "x" * 65):
        assert main(["token", "create", "--role", "subscriber", "--scope", bad, "--token-secret", secret]) == 2
        err = capsys.readouterr().err
        assert "scope" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
