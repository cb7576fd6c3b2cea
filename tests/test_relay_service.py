"""The relay as a service (issue 14), run as its own process the way the container and
systemd run it: ``python -m pitbox.live.service`` configured only by the environment.

wss with a self-made certificate (openssl CLI); frames from a real ``.ibt`` whose rows the
subscriber must receive unchanged (read independently with ``open_telemetry``); secrets and
certificate replaced on disk and picked up without a restart (same process id); SIGTERM
closes clients with 1001 and exits 0; bad settings exit 2 naming the variable."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake, InvalidStatus

from pitbox.ibt import open_telemetry
from pitbox.live import RelayPublisher, create_token, new_secret
from pitbox.live.health import probe
from pitbox.live.replay import ibt_frames
from pitbox.live.service import RelayConfig, similar_unknown
from pitbox.live.testing import open_log, run, self_signed_certificate, wait_until

from conftest import LANGLEY, ROOT, need

pytestmark = [pytest.mark.timeout(90), pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")]
START, N = 1000, 60


def clean_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PITBOX_")}
    env.update({"PITBOX_HOST": "127.0.0.1", "PITBOX_PORT": "0", "PITBOX_LOG_LEVEL": "INFO"}, **settings)
    return env


class Service:
    """``python -m pitbox.live.service`` as a child process; stderr (the log) to a file."""

    def __init__(self, tmp: Path, **settings: str):
        self.log_path = tmp / "relay.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen([sys.executable, "-m", "pitbox.live.service"], cwd=ROOT, env=clean_env(**settings),
                                     stdout=subprocess.PIPE, stderr=self._log, text=True)
        line = self.proc.stdout.readline()
        match = re.search(r"listening on (wss?://\S+)", line)
        if match is None:
            self.close()
            raise AssertionError(f"relay did not start: {line!r} {self.log_path.read_text()}")
        self.url = match.group(1)

    def log(self) -> str:
        return self.log_path.read_text()

    def close(self) -> int:
        if self.proc.poll() is None:
            self.proc.kill()
        rc = self.proc.wait(10)
        self.proc.stdout.close()
        self._log.close()
        return rc


@pytest.fixture
def service_factory(tmp_path):
    started: list[Service] = []

    def start(**settings: str) -> Service:
        started.append(Service(tmp_path, **settings))
        return started[-1]

    yield start
    for s in started:
        s.close()


async def handshake(url: str, token: str, cafile: Path | None = None) -> int | str:
    """101 when the relay accepts the token, the HTTP status when it refuses it, or the TLS
    error's name when the certificate is not trusted."""
    ctx = ssl.create_default_context(cafile=str(cafile)) if cafile else None
    try:
        async with connect(url, additional_headers={"Authorization": f"Bearer {token}"}, proxy=None,
                           open_timeout=10, **({"ssl": ctx} if ctx else {})):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code
    except ssl.SSLCertVerificationError:
        return "untrusted"


def test_wss_relay_from_the_environment_serves_reports_health_and_stops_on_sigterm(tmp_path, service_factory):
    source = need(LANGLEY)
    with open_telemetry(source) as f:
        rows = f.read(["Speed", "RPM"], START, START + N)
    frames = ibt_frames(source, start=START, stop=START + N)
    cert, key = self_signed_certificate(tmp_path / "tls")
    secret = new_secret()
    secrets = tmp_path / "secrets"
    secrets.write_text(secret + "\n")
    svc = service_factory(PITBOX_CERTFILE=str(cert), PITBOX_KEYFILE=str(key), PITBOX_TOKEN_SECRET_FILE=str(secrets))
    assert svc.url.startswith("wss://127.0.0.1:")
    pub = RelayPublisher(svc.url, token=create_token(secret, "publisher", subject="alice"), ssl=cert,
                         backoff_s=0.02, backoff_max_s=0.2).start()

    async def scenario():
        sub = await open_log(svc.url, token=create_token(secret, "subscriber"), ssl=cert,
                             subscribe={"channels": ["Speed", "RPM"], "rate": 60})
        await sub.wait_for(lambda lg: lg.of("subscribed"))
        for tick, t, values in frames:
            pub.publish_frame(tick, t, values)
            await sub.wait_for(lambda lg, tick=tick: lg.frames() and lg.frames()[-1]["tick"] == tick)
        health = await asyncio.get_running_loop().run_in_executor(None, lambda: probe(svc.url, cafile=cert))
        with pytest.raises(InvalidHandshake):  # plain ws to the TLS port
            await handshake(svc.url.replace("wss://", "ws://"), create_token(secret, "subscriber"))
        untrusting = await handshake(svc.url, create_token(secret, "subscriber"), other_cert)
        svc.proc.send_signal(signal.SIGTERM)
        await sub.wait_for(lambda lg: lg.closed is not None)
        return sub, health, untrusting

    other_cert, _ = self_signed_certificate(tmp_path / "other")
    try:
        assert pub.wait_connected(15)
        sub, (status, health), untrusting = run(scenario())
    finally:
        pub.stop()
    rc = svc.proc.wait(15)
    got = sub.frames()
    assert [f["tick"] for f in got] == [fr[0] for fr in frames]
    for f in got:
        i = f["tick"] - START
        assert f["values"] == {"Speed": float(rows["Speed"][i]), "RPM": float(rows["RPM"][i])}
    assert status == 200 and health["status"] == "ok" and health["tls"] is True and health["auth"] is True
    assert health["clients"]["publishers"] == 1 and health["clients"]["subscribers"] == 1
    assert health["drivers"] == {"known": 1, "connected": 1}
    assert untrusting == "untrusted", "a client that trusts another certificate refuses this relay"
    assert sub.ws.close_code == 1001, "going away"
    assert rc == 0
    log = svc.log()
    assert "SIGTERM: stopping" in log and "pitbox-relay stopped in" in log and "Traceback" not in log


def test_secrets_and_certificate_change_without_a_restart(tmp_path, service_factory):
    old, new = new_secret(), new_secret()
    secrets = tmp_path / "secrets"
    secrets.write_text(old + "\n")
    cert, key = self_signed_certificate(tmp_path / "a")
    svc = service_factory(PITBOX_CERTFILE=str(cert), PITBOX_KEYFILE=str(key), PITBOX_TOKEN_SECRET_FILE=str(secrets))
    pid = svc.proc.pid

    def status(secret: str, cafile: Path = cert) -> int | str:
        return run(handshake(svc.url, create_token(secret, "subscriber"), cafile))

    assert (status(old), status(new)) == (101, 401)
    secrets.write_text(f"{new}\n{old}\n")  # change-over: picked up from the file's new mtime
    wait_until(lambda: status(new) == 101, 20)
    assert status(old) == 101
    secrets.write_text(f"{new}\n")  # the old secret retired
    wait_until(lambda: status(old) == 401, 20)

    renewed, renewed_key = self_signed_certificate(tmp_path / "b")  # a renewal lands on the same paths
    shutil.copy(renewed_key, key)
    shutil.copy(renewed, cert)
    assert status(new, renewed) == "untrusted", "the old certificate is served until SIGHUP"
    svc.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: status(new, renewed) == 101, 20)
    assert svc.proc.pid == pid and svc.proc.poll() is None, "same process, never restarted"
    # the relay logs a reload once it has taken effect, so a handshake may get in first: await the line
    wait_until(lambda: "certificate reloaded" in svc.log() and svc.log().count("token secrets reloaded") >= 2, 20)
    assert svc.log().count("token secrets reloaded") == 2


def test_bad_settings_exit_2_naming_the_variable(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pitbox.live.service"], cwd=ROOT, capture_output=True, text=True,
                          env=clean_env(PITBOX_HOST="0.0.0.0"), timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "serving beyond this computer needs a token secret" in proc.stderr and "PITBOX_TOKEN_SECRET" in proc.stderr
    cases = {"PITBOX_PORT": ("http", "PITBOX_PORT: expected a whole number"),
             "PITBOX_MAX_SUBSCRIBERS": ("-3", "PITBOX_MAX_SUBSCRIBERS: expected at least 0"),
             "PITBOX_IDLE_TIMEOUT_S": ("soon", "PITBOX_IDLE_TIMEOUT_S: expected a number"),
             "PITBOX_MAX_MESSAGE_BYTES": ("100", "PITBOX_MAX_MESSAGE_BYTES: limit max_message_bytes: expected at least 1024"),
             "PITBOX_LOG_FORMAT": ("xml", "PITBOX_LOG_FORMAT: expected text or json"),
             "PITBOX_TOKEN_SECRET": ("short", "PITBOX_TOKEN_SECRET: expected a secret of at least 32 bytes"),
             "PITBOX_TOKEN_SECRET_FILE": (str(tmp_path / "missing"), "token secrets file not found")}
    for name, (value, message) in cases.items():
        with pytest.raises(Exception, match=re.escape(message)):
            RelayConfig.from_env({name: value})
    config = RelayConfig.from_env({"PITBOX_MAX_PUBLISHERS": "3", "PITBOX_ORIGINS": "https://a.example, https://b.example",
                                   "PITBOX_PUBLISHER_MESSAGES_PER_S": "90.5"})
    assert config.limits.max_publishers == 3 and config.limits.publisher_messages_per_s == 90.5
    assert config.origins == ("https://a.example", "https://b.example")
    assert similar_unknown({"PITBOX_MAX_SUBSCRIBER": "3", "PITBOX_DATA": "d"}) == [
        ("PITBOX_MAX_SUBSCRIBER", "PITBOX_MAX_SUBSCRIBERS")]


def test_pitbox_relay_from_env_refuses_other_options():
    from pitbox.cli import main

    assert main(["relay", "--from-env", "--port", "9999"]) == 2


def test_healthcheck_script_runs_without_the_package(tmp_path, service_factory):
    """The container's HEALTHCHECK runs health.py as a plain script: it must not import pitbox."""
    secret = new_secret()
    svc = service_factory(PITBOX_TOKEN_SECRET=secret)
    port = svc.url.rsplit(":", 1)[1]
    script = tmp_path / "healthcheck.py"
    script.write_bytes((ROOT / "pitbox" / "live" / "health.py").read_bytes())
    env = clean_env(PITBOX_PORT=port)
    ok = subprocess.run([sys.executable, "-I", str(script)], capture_output=True, text=True, env=env, cwd=tmp_path,
                        timeout=60)
    assert ok.returncode == 0 and '"status":"ok"' in ok.stdout
    svc.proc.send_signal(signal.SIGTERM)
    assert svc.proc.wait(15) == 0
    down = subprocess.run([sys.executable, "-I", str(script)], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=60)
    assert down.returncode == 1 and "unhealthy" in down.stderr


def test_a_recorder_publishes_to_two_relays_a_replica_without_clustering_code():
    import argparse

    from pitbox.live import Relay
    from pitbox.live.cli import add_stream_options, open_publishers

    secret = new_secret()
    parser = argparse.ArgumentParser()
    add_stream_options(parser)
    with Relay(port=0, token_secret=secret) as first, Relay(port=0, token_secret=secret) as second:
        args = parser.parse_args(["--publish", first.url, "--publish", second.url,
                                  "--token", create_token(secret, "publisher", subject="alice")])
        outputs = open_publishers(args, driver_info={"name": "Alice"})
        try:
            assert [p.url for p in outputs] == [first.url + "/publish", second.url + "/publish"]
            assert all(p.wait_connected(10) for p in outputs)
            wait_until(lambda: [d["id"] for d in first.drivers()] == ["alice"] == [d["id"] for d in second.drivers()])
        finally:
            for p in outputs:
                p.stop()
