"""Voiced coaching benchmark: lap end to audio ready, tips spoken in their window over a
1-hour simulated session, and voice command accuracy and decode time.

    .venv/bin/python bench/voice_bench.py [--minutes 60] [--phrases 20] [--skip-commands]
    .venv/bin/python bench/voice_bench.py --quick     # 10 min session, 5 phrases, a third of the clips

Peers, in the same run:

* audio ready: the plain way — pyttsx3's ``save_to_file`` + ``runAndWait`` for the offline
  voice, the ElevenLabs SDK's ``text_to_speech.convert`` (joined, wrapped as WAV) for the
  cloud, each called when the tip arrives, with no cache (the stand-in cloud runs on
  127.0.0.1: its network time is nil, its synthesis is espeak-ng);
* tips in their window: saying each tip the moment it arrives (after the lap's analysis);
* commands: pocketsphinx with the same grammar and front end but no rejection, and with the
  phone-loop edit-distance rule alone (reject above 0.8 per phone).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


def tips_for(n: int) -> list[dict]:
    corners = ["T1", "T2", "T3", "T4", "T5", "T6", "T7", "T8"]
    changes = ["brake {d} m later (at 800 m, not 780 m)", "brake {d} m earlier (at 800 m, not 810 m)",
               "pick up the throttle {d} m earlier", "carry {k} km/h more through the apex"]
    out = []
    for i in range(n):
        out.append({"type": "tip", "lap": i + 1, "lap_index": i + 1, "corner": corners[i % 8],
                    "fault": "brake_early", "change": changes[i % 4].format(d=10 + 3 * i, k=3 + i % 5),
                    "time_loss_s": 0.1 + 0.037 * i, "rank": 1, "reference": "session best"})
    return out


# -- 1. lap end to audio ready -------------------------------------------------------------------


def bench_ready(n: int) -> list[tuple[str, float, float, str]]:
    import pyttsx3

    from pitbox.voice import Voice, tip_phrase
    from pitbox.voice.coach import VoiceCoach
    from pitbox.voice.player import NullPlayer
    from pitbox.voice.testing import StandInElevenLabs
    from pitbox.voice.wav import pcm_to_wav

    rows = []
    tips = tips_for(n)

    def coach_ready(voice: Voice) -> list[float]:
        c = VoiceCoach(voice, NullPlayer())
        c.on_frame(0.0, {"Lap": 1, "LapDistPct": 0.1})
        for tip in tips:  # one at a time, as they come (one or two a lap): no queue in the figure
            c.on_tip(tip)
            c.wait_synthesized(600)
        c.on_frame(0.1, {"Lap": 1, "LapDistPct": 0.1})
        c.close()
        return [r.ready - r.arrived for r in c.ready_log]

    with tempfile.TemporaryDirectory() as d:
        local = Voice(engine="local", cache_dir=Path(d) / "c1")
        local.synthesize("warm up")  # start-up counted separately below
        miss = coach_ready(local)
        hit = coach_ready(local)
        # peer: pyttsx3 as a user would call it, per tip
        eng = pyttsx3.init()
        peer = []
        for i, tip in enumerate(tips):
            t0 = time.perf_counter()
            p = Path(d) / f"peer{i}.wav"
            eng.save_to_file(tip_phrase(tip), str(p))
            eng.runAndWait()
            p.read_bytes()
            peer.append(time.perf_counter() - t0)
        rows.append(("local voice, cache miss", statistics.median(miss), statistics.median(peer), "pyttsx3 direct"))
        rows.append(("local voice, cache hit", statistics.median(hit), statistics.median(peer), "pyttsx3 direct"))

        with StandInElevenLabs(api_key="k") as srv:
            t0 = time.perf_counter()
            cloud = Voice(api_key="k", base_url=srv.url, cache_dir=Path(d) / "c2")
            first = cloud.synthesize("warm up")
            first_s = time.perf_counter() - t0
            cmiss = coach_ready(cloud)
            chit = coach_ready(cloud)
            from elevenlabs.client import ElevenLabs

            client = ElevenLabs(api_key="k", base_url=srv.url)
            cpeer = []
            for tip in tips:
                t0 = time.perf_counter()
                audio = b"".join(client.text_to_speech.convert("JBFqnCBsd6RMkjVDRZzb", text=tip_phrase(tip),
                                                               model_id="eleven_flash_v2_5",
                                                               output_format="pcm_22050"))
                pcm_to_wav(audio, 22050)
                cpeer.append(time.perf_counter() - t0)
        assert first.engine == "elevenlabs"
        rows.append(("stand-in cloud, first call (SDK import)", first_s, float("nan"), ""))
        rows.append(("stand-in cloud, cache miss", statistics.median(cmiss), statistics.median(cpeer), "SDK convert"))
        rows.append(("stand-in cloud, cache hit", statistics.median(chit), statistics.median(cpeer), "SDK convert"))
    return rows


# -- 2. tips spoken in their window over a long session ---------------------------------------------


def bench_window(minutes: float) -> dict:
    import pitbox.analysis as pa
    from pitbox.sim import load_track, simulate_session
    from pitbox.voice import Voice
    from pitbox.voice.coach import VoiceCoach
    from pitbox.voice.player import NullPlayer
    from pitbox.voice.scheduler import QuietZones, Scheduler
    from pitbox.voice.testing import ibt_frames, replay_voice

    laps = max(int(minutes * 60 / 84), 4)
    rng = np.random.default_rng(0)
    kinds = [("brake_early", 20), ("brake_late", 12), ("late_throttle", 20), ("low_min_speed", 6)]
    corners = ["T1", "T3", "T5", "T6", "T7", "T8"]
    faults = []
    for lap in range(2, laps + 1):
        if rng.random() < 0.8:
            f, size = kinds[int(rng.integers(0, len(kinds)))]
            faults.append(f"{lap}:{corners[int(rng.integers(0, len(corners)))]}:{f}:{size}")
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        res = simulate_session("pitboxsim_demo", laps=laps, faults=faults, seed=5, out=Path(d) / "hour.ibt")
        a = pa.analyse(res.ibt_path)
        tips = [{k: (v.item() if hasattr(v, "item") else v) for k, v in t.items()} for _, t in pa.coach(a).tips.iterrows()]
        prep_s = time.perf_counter() - t0
        zones = QuietZones.from_analysis(a)
        coach = VoiceCoach(Voice(engine="local", cache_dir=Path(d) / "cache"), NullPlayer(),
                           Scheduler(zones, latency_s=0.15), background=False)
        frames = ibt_frames(res.ibt_path)
        n = len(frames["SessionTime"])
        t0 = time.perf_counter()
        rec = replay_voice([coach], ({k: v[i] for k, v in frames.items()} for i in range(n)), tips)
        replay_s = time.perf_counter() - t0
    L = a.ref_trace.length_m
    track = load_track("pitboxsim_demo")
    geo = [(c.start_m * L / track.length_m, c.end_m * L / track.length_m) for c in track.corners]
    t = rec["SessionTime"].astype(float)
    dist = rec["LapDistPct"].astype(float) * L
    brake = rec["Brake"].astype(float)
    corner = np.any([(dist >= a0) & (dist <= a1) for a0, a1 in geo], axis=0)
    busy = (brake > 0.05) | corner

    def clean(t0: float, t1: float) -> bool:
        w = (t >= t0) & (t <= t1)
        return bool(w.any()) and not busy[w].any()

    spoken = [s for s in coach.scheduler.spoken if s.message.priority == "tip"]
    ok = sum(clean(s.audible_t, s.end_t) for s in spoken)
    delays = [s.start_t - s.message.created_t for s in spoken]
    # peer: each tip said the moment it arrives
    arrive = [r.message for r in coach.ready_log if r.message.priority == "tip"]
    naive_ok = sum(clean(m.created_t + 0.15, m.created_t + 0.15 + m.duration_s) for m in arrive)
    return {"laps": laps, "tips": len(tips), "spoken": len(spoken), "spoken_clean": ok,
            "expired": len(coach.scheduler.expired), "dropped": len(coach.scheduler.dropped),
            "naive_clean": naive_ok, "delay_p50": pct(delays, 50), "delay_p90": pct(delays, 90),
            "frames": n, "replay_s": replay_s, "prep_s": prep_s, "us_per_frame": replay_s / n * 1e6}


# -- 3. commands ---------------------------------------------------------------------------------------


def bench_commands(seed: int, quick: bool = False) -> list[tuple]:
    from pitbox.voice.commands import CommandRecognizer, _edit_distance, prepare
    from pitbox.voice.testing import OOG_TEST, VOICES_TEST, command_clips

    clips = command_clips(VOICES_TEST[::3] if quick else VOICES_TEST, OOG_TEST, seed=seed, n_noise=8 if quick else 24)
    ours = CommandRecognizer()
    plain = CommandRecognizer(reject=False, warps=(1.0,))
    rows = []
    results = {"PitBox (grammar + rejection model)": [], "grammar only": [], "phone edit distance ≤ 0.8": []}
    times = {k: [] for k in results}
    for c in clips:
        t0 = time.process_time()
        r = ours.recognise(c.samples, c.rate)
        times["PitBox (grammar + rejection model)"].append(time.process_time() - t0)
        results["PitBox (grammar + rejection model)"].append((c, r.phrase if r.command else None))
        t0 = time.process_time()
        x = prepare(c.samples, c.rate)
        with plain._lock:
            d = plain._init()
            hyp, _, _ = plain._decode("commands", x)
        heard = hyp.hypstr if hyp is not None else ""
        from pitbox.voice.commands import parse_command

        cmd, arg = parse_command(heard)
        times["grammar only"].append(time.process_time() - t0)
        results["grammar only"].append((c, heard if cmd else None))
        t0 = time.process_time()
        phrase = None
        if cmd:
            _, psegs, _ = plain._decode("phones", x)
            loop = [s[0] for s in psegs if s[0] not in ("SIL", "+NSN+", "+SPN+", "+BREATH+", "<sil>")]
            exp = []
            for w in heard.split():
                p = d.lookup_word(w)
                exp += p.split() if p else []
            if _edit_distance(loop, exp) / max(len(exp), 1) <= 0.8:
                phrase = heard
        times["phone edit distance ≤ 0.8"].append(time.process_time() - t0)
        results["phone edit distance ≤ 0.8"].append((c, phrase))
    n_cmd = sum(c.kind == "command" for c in clips)
    n_other = len(clips) - n_cmd
    for name, res in results.items():
        right = sum(c.kind == "command" and p == c.phrase for c, p in res)
        wrong = sum(c.kind == "command" and p is not None and p != c.phrase for c, p in res)
        fa = sum(c.kind != "command" and p is not None for c, p in res)
        rows.append((name, right, n_cmd, wrong, fa, n_other, statistics.mean(times[name]) * 1000,
                     pct(times[name], 95) * 1000))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--phrases", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-commands", action="store_true")
    ap.add_argument("--quick", action="store_true", help="a 10-minute session, 5 phrases, a third of the voices")
    args = ap.parse_args()
    if args.quick:
        args.minutes, args.phrases = min(args.minutes, 10.0), min(args.phrases, 5)

    print("## Lap end to audio ready (median over", args.phrases, "tips)\n")
    print("| case | PitBox | peer | peer is | ratio (peer / PitBox) |")
    print("| --- | --- | --- | --- | --- |")
    for name, ours, peer, what in bench_ready(args.phrases):
        ratio = f"{peer / ours:.1f}×" if np.isfinite(peer) and ours > 0 else "—"
        peer_s = f"{peer * 1000:.1f} ms" if np.isfinite(peer) else "—"
        print(f"| {name} | {ours * 1000:.1f} ms | {peer_s} | {what or '—'} | {ratio} |")

    w = bench_window(args.minutes)
    print(f"\n## Tips spoken in their window: {w['laps']} laps ({args.minutes:.0f} min), {w['tips']} tips\n")
    print("| | PitBox scheduler | say at once (peer) |")
    print("| --- | --- | --- |")
    print(f"| tips spoken | {w['spoken']} / {w['tips']} ({w['spoken'] / max(w['tips'], 1):.0%}) | {w['tips']} / {w['tips']} |")
    print(f"| heard with no braking and no corner | {w['spoken_clean']} / {w['spoken']} "
          f"({w['spoken_clean'] / max(w['spoken'], 1):.0%}) | {w['naive_clean']} / {w['tips']} "
          f"({w['naive_clean'] / max(w['tips'], 1):.0%}) |")
    print(f"| tips in their window / all tips | {w['spoken_clean'] / max(w['tips'], 1):.0%} | "
          f"{w['naive_clean'] / max(w['tips'], 1):.0%} |")
    print(f"| expired / replaced | {w['expired']} / {w['dropped']} | 0 |")
    print(f"| wait from the tip to its start p50 / p90 | {w['delay_p50']:.1f} s / {w['delay_p90']:.1f} s | 0 s |")
    print(f"\nreplay: {w['frames']} frames in {w['replay_s']:.1f} s ({w['us_per_frame']:.0f} µs a frame, "
          f"scheduler and glue); simulate + analyse {w['prep_s']:.1f} s")

    if not args.skip_commands:
        rows = bench_commands(args.seed, args.quick)
        print("\n## Voice commands (held-out voices and phrases, engine noise 6 dB, digital-silence edges)\n")
        print("| recogniser | commands right | wrong command | others accepted | CPU per clip mean / p95 |")
        print("| --- | --- | --- | --- | --- |")
        for name, right, n_cmd, wrong, fa, n_other, mean_ms, p95_ms in rows:
            print(f"| {name} | {right}/{n_cmd} ({right / n_cmd:.1%}) | {wrong} | {fa}/{n_other} ({fa / n_other:.1%}) "
                  f"| {mean_ms:.0f} ms / {p95_ms:.0f} ms |")


if __name__ == "__main__":
    main()
