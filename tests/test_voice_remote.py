"""Voice commands from a client (the dashboard's push-to-talk, any program) reach the
recorder's voice coach, on its own stream and through the team relay.

The real recorder reads, through unmodified pyirsdk, the memory map our emulator writes from
a real ``.ibt`` file; its publishers are built as ``pitbox record --stream --publish --voice``
builds them. Clients send ``command`` messages; the voice coach answers each through its
scheduler and the answer reaches every client as a ``voice`` message. The fuel answer is
checked against the file's ``FuelLevel`` read by pyirsdk."""

from __future__ import annotations

import asyncio
import re
import threading

import irsdk
import jwt
import pytest
from test_recorder import W13, Running

from pitbox import cli
from pitbox.emulator import Emulator, TickRecord
from pitbox.live import Relay, RelayPublisher, StreamServer
from pitbox.live.auth import create_token
from pitbox.live.cli import open_publishers
from pitbox.live.replay import ibt_frames
from pitbox.live.testing import FAST_REPLAY, open_log, run, wait_until
from pitbox.livecoach.options import start_service
from pitbox.recorder import IrsdkSource
from pitbox.voice.options import start_voice

from conftest import need

SECRET = "s" * 32


def _replies(log, driver: str | None = None) -> list[str]:
    return [m["text"] for m in log.of("voice") if m["priority"] == "reply" and (driver is None or m.get("driver") == driver)]


def _count_posts(voice) -> threading.Semaphore:
    """Released each time the voice coach's real ``post_command`` is called (the test only
    learns when a command reached it)."""
    posted = threading.Semaphore(0)
    post = voice.post_command

    def spy(name, arg=None, reply_to=None):
        post(name, arg, reply_to)
        posted.release()

    voice.post_command = spy
    return posted


def test_commands_from_clients_are_answered_by_the_recorders_voice_coach(tmp_path) -> None:
    ibt = need(W13)
    relay = Relay("127.0.0.1", 0, limits=FAST_REPLAY).start()
    args = cli.build_parser().parse_args(["record", "--stream", "--stream-port", "0", "--publish", relay.url,
                                          "--driver-id", "alice", "--voice", "text", "--voice-player", "null"])
    targets = open_publishers(args)
    server = targets[0]
    voice = start_voice(args, targets)
    posted = _count_posts(voice)
    service = start_service(args, targets, tmp_path / "data", voice=voice, process=False)
    emu = Emulator([ibt], tmp_path / "irsdk.bin", speed=float("inf"), keep_ground_truth=False).open()
    rec = Running(IrsdkSource(emu.memmap_path), tmp_path / "data", publisher=service)
    try:
        async def main() -> tuple:
            local = await open_log(server.url, subscribe={"channels": ["SessionTick"], "rate": 60})
            team = await open_log(relay.url, subscribe={"channels": ["SessionTick"], "rate": 1, "drivers": ["alice"]})
            await local.wait_for(lambda log: log.of("subscribed"))
            await team.wait_for(lambda log: any(d["id"] == "alice" and d.get("commands") and d["connected"]
                                                for m in log.of("hello") + log.of("drivers") for d in m["drivers"]))
            assert local.of("hello")[0]["commands"] is True and team.of("hello")[0]["commands"] is True
            assert rec.source.mapped.wait(30)

            async def step_until(done) -> None:  # lock step: a tick goes out once the client got the one before
                while not done():
                    r = emu.step()
                    assert r is not None, f"the file ended first; answers {voice.answers}, heard {_replies(local)}"
                    if isinstance(r, TickRecord):
                        await local.wait_for(lambda log, t=r.tick_count: any(m.get("tick") == t for m in log.messages[-8:]),
                                             timeout=30)

            await step_until(lambda: local.of("session"))  # a new session drops what waits to be said
            await local.send({"v": 1, "type": "command", "command": "dance", "id": "bad-1"})
            await local.send({"v": 1, "type": "command", "command": "fuel", "id": "local-1"})
            await team.send({"v": 1, "type": "command", "command": "focus on turn", "arg": 3, "id": 7})  # no driver
            await team.send({"v": 1, "type": "command", "command": "focus on turn", "arg": 3, "driver": "alice",
                             "id": "team-1"})
            await local.wait_for(lambda log: log.of("command_ok"))
            await team.wait_for(lambda log: log.of("command_ok"))
            for _ in range(2):  # both reached the voice coach (the relay's one over the publisher's socket)
                assert await asyncio.to_thread(posted.acquire, True, 30)
            await step_until(lambda: len(_replies(local)) == 2 and len(_replies(team, "alice")) == 2)
            return local, team

        local, team = run(main(), timeout=120)
    finally:
        emu.close()
        rec.stop()
        service.stop()
        relay.stop()
    (bad,) = local.of("error")
    assert bad["code"] == "bad_command" and "dance" in bad["message"] and bad["id"] == "bad-1"
    (no_driver,) = team.of("error")
    assert no_driver["code"] == "bad_driver" and no_driver["id"] == 7
    assert local.of("command_ok")[0] == {"v": 1, "type": "command_ok", "command": "fuel", "arg": None, "id": "local-1"}
    assert team.of("command_ok")[0] == {"v": 1, "type": "command_ok", "command": "focus on turn", "arg": 3,
                                        "driver": "alice", "id": "team-1"}
    assert sorted(_replies(local)) == sorted(_replies(team, "alice"))  # everyone hears what the driver hears
    # each answer names the command it answers: a client tells its own from another's
    answers = {m["reply_to"]: m["text"] for m in local.of("voice") if m["priority"] == "reply"}
    assert answers == {m["reply_to"]: m["text"] for m in team.of("voice") if m["priority"] == "reply"}
    fuel = answers["local-1"]
    assert answers["team-1"] == "Focus on turn 3" and voice.scheduler.focus == "T3"
    ref = irsdk.IBT()
    ref.open(str(ibt))
    levels = ref.get_all("FuelLevel")
    ref.close()
    litres = float(re.fullmatch(r"(\d+) litres of fuel", fuel).group(1))
    assert round(min(levels)) <= litres <= round(max(levels))
    assert voice.errors == 0 and service.errors == 0


@pytest.mark.parametrize("hub", ["stream", "relay"])
def test_a_token_without_the_command_scope_cannot_command(hub: str) -> None:
    """A subscriber token only reads; ``--scope command`` lets it command (stream and relay)."""
    if hub == "stream":
        server = StreamServer("127.0.0.1", 0, token_secret=SECRET, voice_commands=True).start()
        heard: list = []
        server.command_handler = lambda name, arg, rid: heard.append((name, arg))
    else:
        server, heard = Relay("127.0.0.1", 0, token_secret=SECRET).start(), []
        bob = RelayPublisher(server.url, token=create_token(SECRET, "publisher", subject="bob"), voice_commands=True,
                             backoff_s=0.02, backoff_max_s=0.2)
        bob.command_handler = lambda name, arg, rid: heard.append((name, arg))
        bob.start()
    reader = create_token(SECRET, "subscriber")
    commander = create_token(SECRET, "subscriber", scope=["command"])
    bobs_coach = create_token(SECRET, "subscriber", scope=["command:bob"])  # may command bob only
    assert jwt.decode(commander, SECRET, algorithms=["HS256"])["scope"] == "command"
    try:
        async def main() -> tuple:
            a = await open_log(server.url, token=reader)
            b = await open_log(server.url, token=commander)
            c = await open_log(server.url, token=bobs_coach)
            for log in (a, b, c):
                await log.wait_for(lambda log: log.of("hello"))
            msg = {"v": 1, "type": "command", "command": "delta", "driver": "alice"}
            for log in (a, b, c):
                await log.send(msg)
            if hub == "relay":  # a driver that is not a driver id: a clear error, the connection stays
                await c.send({**msg, "driver": ["bob"], "id": "odd"})
            await a.wait_for(lambda log: log.of("error"))
            await b.wait_for(lambda log: log.of("error") or log.of("command_ok"))
            await c.wait_for(lambda log: log.of("error") or log.of("command_ok"))
            if hub == "relay":  # bob's coach commands bob
                await c.wait_for(lambda log: any(d["id"] == "bob" and d["connected"] and d.get("commands")
                                                 for m in log.of("hello") + log.of("drivers") for d in m["drivers"]))
                await c.send({"v": 1, "type": "command", "command": "fuel", "driver": "bob"})
                await c.wait_for(lambda log: log.of("command_ok"))
            return a, b, c

        a, b, c = run(main())
        if hub == "relay":
            wait_until(lambda: heard, 30)  # the relay passed it over bob's publisher socket
    finally:
        if hub == "relay":
            bob.stop()
        server.stop()
    assert a.of("hello")[0]["commands"] is False and b.of("hello")[0]["commands"] is True
    assert a.of("error")[0]["code"] == "forbidden" and "command scope" in a.of("error")[0]["message"]
    if hub == "stream":  # a recorder's own stream serves one driver: any command scope signed with its secret
        assert b.of("command_ok") and c.of("command_ok") and heard == [("delta", None)] * 2
    else:  # allowed, but no driver alice on this relay; bob's coach may not even ask
        assert b.of("error")[0]["code"] == "bad_driver"
        assert c.of("hello")[0]["commands"] is True and c.of("hello")[0]["command_drivers"] == ["bob"]
        assert c.of("error")[0]["code"] == "forbidden" and "only bob" in c.of("error")[0]["message"]
        assert c.of("error")[1]["code"] == "bad_driver" and c.of("error")[1]["id"] == "odd"
        assert c.of("command_ok")[0]["driver"] == "bob" and heard == [("fuel", None)]


def test_a_bad_command_is_refused_before_it_is_sent() -> None:
    from pitbox.live import LiveClient
    from pitbox.live.protocol import ProtocolError

    client = LiveClient("ws://127.0.0.1:9")  # never connects: the check comes first
    for name, arg, rid in (("dance", None, None), ("fuel", 3, None), ("focus on turn", 0, None),
                           ("focus on turn", "3", None), ("fuel", None, ""), ("fuel", None, "x" * 65),
                           ("fuel", None, 1.5), ("fuel", None, True)):
        with pytest.raises(ProtocolError) as err:
            asyncio.run(client.command(name, arg, id=rid))
        assert err.value.code == "bad_command"


def test_cli_command_prints_the_voice_coachs_answer(tmp_path, capsys) -> None:
    """``pitbox command fuel`` reaches the recorder's voice coach and prints what it says (the
    fuel level of the real file, read by pyirsdk); a stream without a voice coach is a clear
    error, exit 2, no traceback."""
    import json

    ibt = need(W13)
    rows = ibt_frames(ibt, ["Lap", "LapDistPct", "OnPitRoad", "FuelLevel", "LapLastLapTime"])
    args = cli.build_parser().parse_args(["record", "--stream", "--stream-port", "0", "--voice", "text",
                                          "--voice-player", "null"])
    targets = open_publishers(args)
    voice = start_voice(args, targets)
    posted = _count_posts(voice)
    service = start_service(args, targets, tmp_path / "data", voice=voice, process=False)
    plain = StreamServer("127.0.0.1", 0).start()
    try:
        service.publish_session({"id": "S1", "track": "x"})
        codes: list[int] = []
        asking = threading.Thread(target=lambda: codes.append(
            cli.main(["command", "fuel", "--url", targets[0].url, "--json", "--timeout", "120"])))
        asking.start()
        assert posted.acquire(True, 60), "the command never reached the voice coach"
        for tick, t, values in rows:  # the recorder's frames, until its voice has answered
            if not asking.is_alive():
                break
            service.publish_frame(tick, t, values)
            assert service.wait_idle(30) and voice.wait_synthesized(30)
        asking.join(60)
        out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert codes == [0] and out["taken"] is True and out["command"] == "fuel"
        levels = [float(v["FuelLevel"]) for _, _, v in rows]
        litres = float(re.fullmatch(r"(\d+) litres of fuel", out["answer"]).group(1))
        assert round(min(levels)) <= litres <= round(max(levels))
        assert cli.main(["command", "delta", "--url", plain.url, "--timeout", "60"]) == 2
        err = capsys.readouterr().err
        assert "runs no voice coach" in err and "Traceback" not in err
    finally:
        service.stop()
        plain.stop()


def test_voice_commands_are_rate_limited_per_connection() -> None:
    """Each command is answered in the driver's ears: a client (a script, a stuck button) gets
    a burst of 3 and then ``commands_per_s``; the excess is refused with each command's id,
    the connection stays open, and another client is not affected."""
    server = StreamServer("127.0.0.1", 0, voice_commands=True, commands_per_s=0.001).start()  # no refill here
    heard: list = []
    server.command_handler = lambda name, arg, rid: heard.append(rid)
    try:
        async def main() -> tuple:
            a = await open_log(server.url)
            b = await open_log(server.url)
            for log in (a, b):
                await log.wait_for(lambda log: log.of("hello"))
            for k in range(5):
                await a.send({"v": 1, "type": "command", "command": "fuel", "id": f"a{k}"})
            await a.wait_for(lambda log: len(log.of("command_ok")) + len(log.of("error")) == 5)
            await b.send({"v": 1, "type": "command", "command": "delta", "id": "b0"})
            await b.wait_for(lambda log: log.of("command_ok") or log.of("error"))
            assert a.closed is None  # refused, not dropped
            return a, b

        a, b = run(main())
    finally:
        server.stop()
    assert [m["id"] for m in a.of("command_ok")] == ["a0", "a1", "a2"]
    assert [(m["code"], m["id"]) for m in a.of("error")] == [("rate_limited", "a3"), ("rate_limited", "a4")]
    assert "voice commands per second" in a.of("error")[0]["message"]
    assert [m["id"] for m in b.of("command_ok")] == ["b0"] and heard == ["a0", "a1", "a2", "b0"]


ODD_VALUES = (None, True, 0, -1, 1.5, 10**20, "", "x" * 100, "Speed", "bob", [], ["bob"], {}, {"a": 1}, [[1]])
#: a valid message of each type the server takes from a subscriber; each field is then made odd
VALID = {"subscribe": {"channels": ["Speed"], "rate": 10, "drivers": None},
         "history": {"since_tick": None},
         "set_reference": {"kind": "session_best", "lap": None, "driver": "bob"},
         "command": {"command": "fuel", "arg": None, "id": "c1", "driver": "bob"}}
CODES = {"bad_json", "binary", "bad_version", "bad_message", "unknown_type", "bad_rate", "bad_channels", "bad_drivers",
         "bad_history", "not_subscribed", "too_big", "bad_driver", "bad_reference", "no_coach", "forbidden",
         "bad_command", "no_voice", "rate_limited"}


@pytest.mark.parametrize("hub", ["stream", "relay", "relay with a command:bob token"])
def test_every_odd_field_gets_an_error_and_the_connection_stays(hub: str, caplog) -> None:
    """Each client message type with each field set to values of every JSON type (and the
    message itself not an object, or of no known type): every one is answered in order, with
    an ``error`` of a documented code when refused; the server's handler never fails (a
    ``TypeError`` there closes the connection) and the client is still served afterwards."""
    import logging

    from pitbox.live.limits import Limits

    messages: list = [[1, 2], "text", 3, None, {"v": 1}, {"v": 2, "type": "subscribe"}]
    messages += [{"v": 1, "type": value} for value in ODD_VALUES]
    for kind, valid in VALID.items():
        for name in valid:
            messages.append({"v": 1, "type": kind, **{k: v for k, v in valid.items() if k != name}})  # missing
            for value in ODD_VALUES:
                messages.append({"v": 1, "type": kind, **valid, name: value})
    free = Limits(subscriber_messages_per_s=0, commands_per_s=0)  # every message answered, none dropped
    bob = None
    if hub == "stream":
        server = StreamServer("127.0.0.1", 0, voice_commands=True, limits=free).start()
        server.command_handler = lambda name, arg, rid: None
        server.control_handler = lambda msg: None
    else:
        scoped = hub != "relay"
        server = Relay("127.0.0.1", 0, limits=free, token_secret=SECRET if scoped else None).start()
        bob = RelayPublisher(server.url, driver_id="bob", voice_commands=True, backoff_s=0.02, backoff_max_s=0.2,
                             token=create_token(SECRET, "publisher", subject="bob") if scoped else None).start()
        bob.command_handler = lambda name, arg, rid: None
        bob.control_handler = lambda msg: None
    caplog.set_level(logging.ERROR)
    try:
        async def main():
            token = create_token(SECRET, "subscriber", scope=["command:bob"]) if "token" in hub else None
            log = await open_log(server.url, token=token)
            await log.wait_for(lambda lg: lg.of("hello"))
            if bob is not None:
                await log.wait_for(lambda lg: any(d["id"] == "bob" and d["connected"] for m in lg.of("hello")
                                                  + lg.of("drivers") for d in m["drivers"]))
            for m in messages:
                await log.send(m)
            # in order: once this one is answered, every one before it was handled
            await log.send({"v": 1, "type": "subscribe", "channels": ["Speed", "RPM"], "rate": 10})
            await log.wait_for(lambda lg: any(m.get("channels") == ["Speed", "RPM"] and m.get("rate") == 10
                                              for m in lg.of("subscribed")), timeout=60)
            assert log.closed is None
            return log

        log = run(main(), timeout=120)
    finally:
        if bob is not None:
            bob.stop()
        server.stop()
    failures = [r.getMessage() for r in caplog.records if "handler failed" in r.getMessage() or r.exc_info]
    assert not failures, failures
    errors = log.of("error")
    assert {e["code"] for e in errors} <= CODES, {e["code"] for e in errors} - CODES
    assert len(errors) >= len(messages) // 3  # most of these are refused, each with its own error
