"""The relay's limits for a public service (issue 14): publishers and subscribers, message
size and rate per client, hello and idle timeouts, dead peers; each gives the client a clear
error (an ``error`` message with its code, then the close code and reason), is logged once,
and leaves the relay and its other clients running. Also token rotation without a restart.

Real relays on 127.0.0.1 with OS-picked ports; real WebSocket clients. Expected codes come
from RFC 6455 (1008 policy, 1009 too big, 1013 try again later) and the documented error
codes; counts come from what each test itself sent."""

from __future__ import annotations

import asyncio
import logging

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from pitbox.live import LiveError, Relay, RelayPublisher, create_token, new_secret
from pitbox.live.auth import ENV_SECRET, ENV_SECRET_PREVIOUS, Keyring, fingerprint
from pitbox.live.limits import ADMIT, DROP, DROP_AND_TELL, ClientGuard, Limits, TokenBucket
from pitbox.live.testing import open_log, run, wait_until

pytestmark = pytest.mark.timeout(60)
SECRET = new_secret()


def pub_token(driver: str, secret: str = SECRET) -> str:
    return create_token(secret, "publisher", subject=driver)


def sub_token(secret: str = SECRET) -> str:
    return create_token(secret, "subscriber")


def hello(driver: str) -> dict:
    return {"v": 1, "type": "hello", "driver": {"id": driver}}


def frame(tick: int, speed: float = 40.0) -> dict:
    return {"v": 1, "type": "frame", "tick": tick, "t": tick / 60, "values": {"Speed": speed}}


async def publisher(url: str, driver: str):
    log = await open_log(url + "/publish", token=pub_token(driver))
    await log.send(hello(driver))
    return log


def closed(lg) -> bool:
    return lg.closed is not None


def relay_with(**limits) -> Relay:
    return Relay(port=0, token_secret=SECRET, limits=Limits(**limits))


def warnings_with(caplog, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and text in r.getMessage()]


def test_max_publishers_refuses_another_driver_but_not_a_reconnecting_one(caplog):
    caplog.set_level(logging.INFO)

    async def scenario(relay):
        alice = await publisher(relay.url, "alice")
        await alice.wait_for(lambda lg: lg.of("hello"))
        refused = []
        for _ in range(3):  # a recorder retrying: one log line, not three
            bob = await publisher(relay.url, "bob")
            await bob.wait_for(closed)
            refused.append(bob)
        again = await publisher(relay.url, "alice")  # the same driver reconnecting replaces itself
        await again.wait_for(lambda lg: lg.of("hello"))
        await alice.wait_for(closed)
        health = await asyncio.get_running_loop().run_in_executor(None, relay.health)
        return alice, refused, again.closed, health

    with relay_with(max_publishers=1) as relay:
        alice, refused, again_closed, health = run(scenario(relay))
    for bob in refused:
        assert [m["code"] for m in bob.of("error")] == ["too_many_publishers"]
        assert bob.ws.close_code == 1013 and "try again later" in bob.ws.close_reason
    assert alice.ws.close_code == 4000 and again_closed is None
    assert health["counters"]["full"] == 3 and health["clients"]["publishers"] == 1
    assert health["drivers"] == {"known": 1, "connected": 1}
    assert len(warnings_with(caplog, "publishers connected (the limit)")) == 1


def test_max_subscribers_refuses_the_next_one_with_a_reason():
    async def scenario(relay):
        first = await open_log(relay.url, token=sub_token(), subscribe={"channels": ["Speed"]})
        await first.wait_for(lambda lg: lg.of("subscribed"))
        second = await open_log(relay.url, token=sub_token())
        await second.wait_for(closed)
        return first.closed, second

    with relay_with(max_subscribers=1) as relay:
        first_closed, second = run(scenario(relay))
    assert [m["code"] for m in second.of("error")] == ["too_many_subscribers"]
    assert second.ws.close_code == 1013 and first_closed is None


def test_message_size_per_role_closes_only_that_client_with_1009(caplog):
    caplog.set_level(logging.INFO)

    async def scenario(relay):
        watcher = await open_log(relay.url, token=sub_token(), subscribe={"channels": ["Speed"], "rate": 60})
        alice = await publisher(relay.url, "alice")
        await alice.wait_for(lambda lg: lg.of("hello"))
        big_sub = await open_log(relay.url, token=sub_token())
        await big_sub.send('{"v": 1, "type": "subscribe", "channels": ["' + "x" * 2100 + '"]}')
        await big_sub.wait_for(closed)
        big_pub = await publisher(relay.url, "bob")
        await big_pub.wait_for(lambda lg: lg.of("hello"))
        await big_pub.send({**frame(1), "values": {"Speed": 1.0, "Junk": "y" * 5000}})
        await big_pub.wait_for(closed)
        await alice.send(frame(7, 41.5))
        await watcher.wait_for(lambda lg: lg.frames())
        await alice.send({**frame(8), "values": {"Speed": 42.0, "Note": "z" * 3000}})  # < publisher limit
        await watcher.wait_for(lambda lg: any(f["tick"] == 8 for f in lg.frames()))
        assert watcher.closed is None
        return watcher, big_sub, big_pub

    with relay_with(max_message_bytes=2048, max_publisher_message_bytes=4096) as relay:
        watcher, big_sub, big_pub = run(scenario(relay))
        counters = relay.health()["counters"]
    assert big_sub.ws.close_code == 1009 and big_pub.ws.close_code == 1009
    assert [f["values"]["Speed"] for f in watcher.frames()] == [41.5, 42.0]
    assert counters["too_big"] == 2
    assert len(warnings_with(caplog, "a message over 2048 bytes")) == 1
    assert len(warnings_with(caplog, "a message over 4096 bytes")) == 1


def test_subscriber_message_rate_drops_the_excess_tells_once_and_keeps_serving(caplog):
    sent = 60

    async def scenario(relay):
        log = await open_log(relay.url, token=sub_token())
        for _ in range(sent):
            await log.send({"v": 1, "type": "subscribe", "channels": ["Speed"], "rate": 60})
        await log.wait_for(lambda lg: lg.of("error"))
        pub = await publisher(relay.url, "alice")
        await pub.wait_for(lambda lg: lg.of("hello"))
        await pub.send(frame(3))
        await log.wait_for(lambda lg: lg.frames())  # still subscribed and served
        assert log.closed is None
        return log

    with relay_with(subscriber_messages_per_s=5) as relay:
        log = run(scenario(relay))
        counters = relay.health()["counters"]
    errors = log.of("error")
    answered = len(log.of("subscribed"))
    assert errors and {e["code"] for e in errors} == {"rate_limited"}
    assert "5 messages per second" in errors[0]["message"]
    assert 10 <= answered < sent, "the burst (2 s at 5/s) is served, the rest dropped"
    assert counters["rate_limited"] == len(errors)
    assert len(warnings_with(caplog, "over the message rate limit")) == 1


def test_publisher_message_rate_applies_to_every_message_type():
    async def scenario(relay):
        pub = await publisher(relay.url, "alice")
        await pub.wait_for(lambda lg: lg.of("hello"))
        for k in range(30):  # not frames: laps, a type the relay also takes
            await pub.send({"v": 1, "type": "lap", "row": {"lap": k}})
        await pub.wait_for(lambda lg: lg.of("error"))
        assert pub.closed is None
        return pub

    with relay_with(publisher_messages_per_s=5) as relay:
        pub = run(scenario(relay))
    assert pub.of("error")[0]["code"] == "rate_limited"


@pytest.mark.parametrize("role", ["subscriber", "publisher"])
def test_hello_timeout_closes_a_silent_connection(role):
    async def scenario(relay):
        if role == "publisher":
            log = await open_log(relay.url + "/publish", token=pub_token("alice"))
        else:
            log = await open_log(relay.url, token=sub_token())
        await log.wait_for(closed)
        return log

    with relay_with(hello_timeout_s=0.2) as relay:
        log = run(scenario(relay))
        assert relay.health()["counters"]["timeouts"] == 1
    assert [m["code"] for m in log.of("error")] == ["hello_timeout"]
    assert log.ws.close_code == 1008 and "within 0.2 s" in log.ws.close_reason


def test_idle_timeout_closes_a_silent_publisher_but_not_a_recorder_sending_keepalives():
    with relay_with(idle_timeout_s=0.3) as relay:
        pub = RelayPublisher(relay.url, token=pub_token("alice"), backoff_s=0.02, backoff_max_s=0.1).start()
        try:
            assert pub.wait_connected(10)

            async def silent_publishers():
                out = []
                for _ in range(3):  # one after the other: the recorder stays idle through all three
                    carol = await publisher(relay.url, "carol")
                    await carol.wait_for(lambda lg: lg.of("hello"))
                    await carol.wait_for(closed)
                    out.append(carol)
                return out

            silent = run(silent_publishers())
            stats = pub.stats()
        finally:
            pub.stop()
    for carol in silent:
        assert [m["code"] for m in carol.of("error")] == ["idle_timeout"] and carol.ws.close_code == 1008
    assert stats["connected"] and stats["connects"] == 1, "the recorder's keepalives kept it connected"


def test_dead_peer_is_dropped_by_the_ping_timeout():
    """A client whose process froze: the TCP connection stays up, nothing answers pings."""
    with relay_with(ping_interval_s=0.2) as relay:
        async def scenario():
            frozen = await open_log(relay.url, token=sub_token(), subscribe={"channels": ["Speed"]})
            await frozen.wait_for(lambda lg: lg.of("subscribed"))
            frozen.ws.transport.pause_reading()
            await asyncio.get_running_loop().run_in_executor(
                None, wait_until, lambda: relay.health()["clients"]["subscribers"] == 0)
            frozen.ws.transport.abort()

        run(scenario())


def test_limits_are_validated():
    with pytest.raises(LiveError, match="max_message_bytes: expected at least 1024"):
        Limits(max_message_bytes=10)
    with pytest.raises(LiveError, match="hello_timeout_s: expected a number >= 0"):
        Limits(hello_timeout_s=-1)


def test_token_bucket_and_guard_on_a_clock_of_their_own():
    bucket = TokenBucket(rate=5, burst=10, now=0.0)
    assert sum(bucket.take(0.0) for _ in range(20)) == 10
    assert bucket.take(0.1) is False and bucket.take(0.2) is True  # one token per 0.2 s
    guard = ClientGuard(Limits(subscriber_messages_per_s=1), "subscriber", "peer")
    clock = [100.0]
    guard.now = lambda: clock[0]
    guard._bucket = TokenBucket(1, 2, clock[0])
    assert [guard.admit() for _ in range(5)] == [ADMIT, ADMIT, DROP_AND_TELL, DROP, DROP]
    clock[0] += 1.0
    assert [guard.admit() for _ in range(2)] == [ADMIT, DROP_AND_TELL], "a new excess is told again"
    assert guard.dropped == 4


# -- token rotation ----------------------------------------------------------------------

async def handshake(url: str, token: str) -> int:
    try:
        async with connect(url, additional_headers={"Authorization": f"Bearer {token}"}, proxy=None):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


def test_rotation_through_the_secrets_file_without_a_restart(tmp_path):
    old, new = new_secret(), new_secret()
    path = tmp_path / "secrets"
    path.write_text(f"# the current secret first\n{old}\n")
    with Relay(port=0, keyring=Keyring(file=path)) as relay:
        async def both() -> list[int]:
            return [await handshake(relay.url, sub_token(old)), await handshake(relay.url, sub_token(new))]

        def statuses() -> list[int]:
            return run(both())

        before = statuses()
        path.write_text(f"{new}\n{old}\n")  # change-over: both accepted
        assert relay.reload_secrets() is True
        during = statuses()

        async def keep_two_open():
            on_old = await open_log(relay.url, token=sub_token(old), subscribe={"channels": ["Speed"]})
            on_new = await open_log(relay.url, token=sub_token(new), subscribe={"channels": ["Speed"]})
            await on_old.wait_for(lambda lg: lg.of("subscribed"))
            await on_new.wait_for(lambda lg: lg.of("subscribed"))
            path.write_text(f"{new}\n")  # the old secret retired
            await asyncio.get_running_loop().run_in_executor(None, relay.reload_secrets)
            await on_old.wait_for(closed)
            assert on_new.closed is None
            return on_old, on_new, await handshake(relay.url, sub_token(old))

        on_old, on_new, old_after = run(keep_two_open())
        path.write_text("not a secret\n")  # a bad edit keeps the secrets in force
        with pytest.raises(LiveError, match="line 1: expected a secret of at least 32 bytes"):
            relay.reload_secrets()
        still = statuses()
        health = relay.health()
    assert before == [101, 401] and during == [101, 101] and still == [401, 101]
    assert old_after == 401
    assert [m["code"] for m in on_old.of("error")] == ["secret_revoked"] and on_old.ws.close_code == 1008
    assert health["secrets"] == 1


def test_previous_secret_from_the_environment_is_accepted_too():
    old, new, other = new_secret(), new_secret(), new_secret()
    ring = Keyring.from_env(environ={ENV_SECRET: new, ENV_SECRET_PREVIOUS: old})
    assert ring.verify(sub_token(old), "subscriber")[1] == fingerprint(old)
    assert ring.verify(sub_token(new), "subscriber")[1] == fingerprint(new)
    with pytest.raises(LiveError, match="signature does not match"):
        ring.verify(sub_token(other), "subscriber")
    with pytest.raises(LiveError, match="token expired"):
        ring.verify(create_token(old, "subscriber", ttl_s=60, now=1_000_000), "subscriber")
    with pytest.raises(LiveError, match=f"{ENV_SECRET_PREVIOUS}: expected a secret of at least 32"):
        Keyring.from_env(environ={ENV_SECRET: new, ENV_SECRET_PREVIOUS: "short"})


def test_token_create_signs_with_the_current_secret_of_the_file(tmp_path, monkeypatch, capsys):
    """`podman exec pitbox-relay pitbox token create ...` inherits PITBOX_TOKEN_SECRET_FILE."""
    from pitbox.cli import main

    current, previous = new_secret(), new_secret()
    path = tmp_path / "secrets"
    path.write_text(f"{current}\n{previous}\n")
    monkeypatch.delenv(ENV_SECRET, raising=False)
    monkeypatch.setenv("PITBOX_TOKEN_SECRET_FILE", str(path))
    assert main(["token", "create", "--role", "publisher", "--subject", "alice"]) == 0
    token = capsys.readouterr().out.strip()
    claims, key = Keyring(file=path).verify(token, "publisher")
    assert key == fingerprint(current) and claims["sub"] == "alice"
