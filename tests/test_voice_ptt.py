"""Push-to-talk from the wheel: ``pitbox record --voice --ptt radio``.

The real recorder reads, through unmodified pyirsdk, the memory map our emulator writes from
a real ``.ibt`` file; the emulator sets ``RadioTransmitCarIdx`` as iRacing does while a car
transmits on the radio (the player's index, read back by pyirsdk from the map). The
microphone, which cannot run here, is a stand-in returning a synthesized clip in engine
noise; the recogniser is the real one. Another car's transmission starts nothing; the
player's starts a clip, its release ends it, the command is carried out and answered."""

from __future__ import annotations

import math
import re
import time

import irsdk
import numpy as np
from test_recorder import W13, Running

from pitbox import cli
from pitbox.emulator import Emulator, TickRecord
from pitbox.livecoach.options import start_service
from pitbox.recorder import IrsdkSource
from pitbox.voice.options import check_voice_options, start_listener, start_voice
from pitbox.voice.testing import ClipMicrophone, espeak_samples, noisy_clip

from conftest import need


def _until(pred, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def test_the_radio_button_records_a_command_while_the_player_transmits(tmp_path) -> None:
    ibt = need(W13)
    args = cli.build_parser().parse_args(["record", "--voice", "text", "--voice-player", "null"])
    voice = start_voice(args, [])
    mic = ClipMicrophone([noisy_clip(espeak_samples("fuel", "en-gb+m5", 170, 40), np.random.default_rng(21))])
    listener = start_listener(voice, "ptt", ptt="radio", mic=mic)
    service = start_service(args, [], tmp_path / "data", voice=voice, process=False)
    emu = Emulator([ibt], tmp_path / "irsdk.bin", speed=math.inf, keep_ground_truth=False).open()
    run = Running(IrsdkSource(emu.memmap_path), tmp_path / "data", publisher=service)
    ir = irsdk.IRSDK()

    def step(n: int = 1) -> None:  # lock step: each tick taken by the recorder and the voice coach
        for _ in range(n):
            while True:
                before = run.rec.stats.ticks
                r = emu.step()
                assert r is not None, "the file ended first"
                if isinstance(r, TickRecord):
                    break
            _until(lambda b=before: run.rec.stats.ticks > b, "the recorder to take the tick")
            assert service.wait_idle(60) and voice.wait_synthesized(60)

    try:
        assert run.source.mapped.wait(30)
        step(30)
        assert ir.startup(test_file=str(emu.memmap_path))
        me = ir["PlayerCarIdx"]
        assert ir["RadioTransmitCarIdx"] == -1  # nobody transmits (as in the real dumps)
        emu.set_live("RadioTransmitCarIdx", me + 5)  # another car on the radio
        step(20)
        assert not mic.recording.is_set()
        emu.set_live("RadioTransmitCarIdx", me)  # the driver holds the wheel's radio button
        step(1)
        _until(mic.recording.is_set, "the clip to start")
        step(20)
        assert ir["RadioTransmitCarIdx"] == me
        emu.set_live("RadioTransmitCarIdx", -1)  # released
        step(1)
        _until(lambda: listener.results, "the clip to be decoded")
        while not [m for m in voice.sent if m["priority"] == "reply"]:
            step(1)
    finally:
        ir.shutdown()
        emu.close()
        run.stop()
        service.stop()
    assert mic.recorded == 1 and [r.command for r in listener.results] == ["fuel"]
    (reply,) = [m for m in voice.sent if m["priority"] == "reply"]
    ref = irsdk.IBT()
    ref.open(str(ibt))
    levels = ref.get_all("FuelLevel")
    ref.close()
    litres = float(re.fullmatch(r"(\d+) litres of fuel", reply["text"]).group(1))
    assert round(min(levels)) <= litres <= round(max(levels))


def test_ptt_radio_options() -> None:
    def parsed(*extra: str):
        args = cli.build_parser().parse_args(["record", "replay", "x.ibt", *extra])
        check_voice_options(args)
        return args

    assert parsed("--voice", "text", "--ptt", "radio").voice_commands == "ptt"  # --ptt radio alone is enough
    assert cli.main(["record", "replay", "x.ibt", "--ptt", "radio"]) == 2  # needs --voice
    assert cli.main(["record", "replay", "x.ibt", "--voice", "text", "--voice-commands", "wake", "--ptt", "radio"]) == 2
