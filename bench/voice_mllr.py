"""Experiment (issue 11): per-driver MLLR mean adaptation of pocketsphinx's en-us model.

Each voice is "enrolled" from five commands said once (ENROL_PHRASES) in engine noise of
another seed (500 for training voices, 900 for held-out ones): per vocal-tract warp of the
recogniser, the clips are force-aligned to their text, a global mean transform is estimated
in numpy (pitbox.voice.mllr) and loaded by pocketsphinx (``-mllr``). Then that voice's
clips are decoded with its adapted recogniser (the noise clips by the voices' recognisers in
turn), without rejection; the rows are pickled so that rejection models can be scored and
refitted offline (``--refit TRAIN_ROWS [HELD_OUT_ROWS...]``).

    .venv/bin/python bench/voice_mllr.py --kind diag --iters 2 --set train
    .venv/bin/python bench/voice_mllr.py --refit rows_train.pkl rows_quick.pkl
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ENROL_PHRASES = ("where am i losing time", "quiet in the corners", "talk anywhere", "focus on turn seven", "best lap")
FEATS = ["llr_pf", "score_pf", "ed", "nph_ratio"]


def enrolment_clips(voice, seed):
    from pitbox.voice.testing import espeak_samples, noisy_clip

    rng = np.random.default_rng(seed)
    return [(noisy_clip(espeak_samples(p, *voice), rng, 6.0), p) for p in ENROL_PHRASES]


def _decoder(w, logdir, mllr=None):
    import pocketsphinx as ps

    from pitbox.voice.commands import EXTRA_WORDS, REMOVE_NOISE

    extra = {"mllr": str(mllr)} if mllr else {}
    d = ps.Decoder(loglevel="FATAL", lm=None, warp_type="inverse_linear", warp_params=f"{w:g}", mfclogdir=logdir,
                   **extra)
    d.config["remove_noise"] = REMOVE_NOISE
    d.reinit_feat()
    for word, ph in EXTRA_WORDS.items():
        if d.lookup_word(word) is None:
            d.add_word(word, ph, True)
    return d


def estimate(model, cid, voice, seed, outdir, kind, tau, skip, iters=1):
    from pitbox.voice import mllr as M
    from pitbox.voice.commands import WARPS, prepare

    enr = enrolment_clips(voice, seed)
    paths, info = {}, []
    for w in WARPS:
        logdir = tempfile.mkdtemp(prefix="pitbox-mllr-", dir=outdir)
        d = _decoder(w, logdir)
        tr = None
        for it in range(iters):
            if tr is not None:
                d = _decoder(w, logdir, M.write_mllr(f"{outdir}/{voice[0]}_{w:g}_it{it}.mllr", *tr))
            st = M.Stats(model)
            n_ok = 0
            for x, text in enr:
                r = M.align(d, prepare(x, 16000), text, logdir)
                if r is None:
                    continue
                st.add(M.features(r[0]), r[1], cid, skip, tr)
                n_ok += 1
            tr = st.solve(kind, tau)
        paths[w] = str(M.write_mllr(f"{outdir}/{voice[0]}_{w:g}.mllr", *tr))
        info.append((w, n_ok, st.frames))
    return paths, info


def run(clips, voices, enrol_seed, args, label, outdir):
    from pitbox.voice import mllr as M
    from pitbox.voice.commands import DEFAULT_THRESHOLD, CommandRecognizer

    recs = {}
    if args.kind != "none":
        model = M.Model.load()
        cid = M.ciphone_ids(model)
        for v in voices:
            paths, info = estimate(model, cid, v, enrol_seed, outdir, args.kind, args.tau,
                                   set() if args.sil else M.SKIP_PHONES, args.iters)
            recs[v[0]] = CommandRecognizer(reject=False, mllr=paths)
            print(f"  {v[0]}: " + " ".join(f"warp {w:g}: {n} clips aligned, {fr} frames" for w, n, fr in info),
                  file=sys.stderr, flush=True)
    others = list(recs.values()) or [CommandRecognizer(reject=False)]
    rows = []
    for i, c in enumerate(clips):
        r = (recs.get(c.voice) or others[i % len(others)]).recognise(c.samples, c.rate)
        cand = r.phrase if r.command else None
        rows.append((c.kind, c.phrase, c.voice, cand if cand and r.confidence >= DEFAULT_THRESHOLD else None,
                     r.heard, r.confidence, cand, r.features))
    n_cmd = sum(r[0] == "command" for r in rows)
    gram = sum(r[0] == "command" and r[4] == r[1] for r in rows)
    print(f"{label} kind={args.kind} tau={args.tau} sil={args.sil} iters={args.iters}: grammar alone {gram}/{n_cmd}; "
          f"shipped rejection model: {score(rows)}")
    byv: dict[str, list[int]] = {}
    for r in rows:
        if r[0] == "command":
            byv.setdefault(r[2], [0, 0])
            byv[r[2]][0] += r[4] == r[1]
            byv[r[2]][1] += 1
    print("   grammar alone per voice:", " ".join(f"{v}:{a}/{n}" for v, (a, n) in byv.items()))
    print("   grammar misses:", [(r[1], r[2], r[4]) for r in rows if r[0] == "command" and r[4] != r[1]], flush=True)
    out = Path(args.out or f"rows_{label}_{args.kind}_{args.tau:g}_{int(args.sil)}_{args.iters}.pkl")
    out.write_bytes(pickle.dumps(rows))
    print(f"   rows: {out}")
    return rows


def score(rows, model=None, th=None):
    """(commands right, wrong command, others accepted, commands, others) under a rejection model."""
    from pitbox.voice.commands import DEFAULT_THRESHOLD, REJECT_MODEL, CommandRecognizer

    model = model or REJECT_MODEL
    th = DEFAULT_THRESHOLD if th is None else th
    ok = wrong = fa = 0
    for kind, phrase, _v, _p, _h, _cf, cand, feats in rows:
        acc = bool(feats) and cand is not None and CommandRecognizer.confidence(feats, model) >= th
        if kind == "command":
            ok += acc and cand == phrase
            wrong += acc and cand != phrase
        else:
            fa += acc
    n = sum(r[0] == "command" for r in rows)
    return ok, wrong, fa, n, len(rows) - n


def fit(rows, max_fa=0.03):
    """The rejection model refitted on these (training) rows, as bench/voice_train_rejection.py does."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    R = [r for r in rows if r[7] and r[6] is not None]
    X = np.array([[r[7][f] for f in FEATS] for r in R])
    y = np.array([int(r[0] == "command" and r[6] == r[1]) for r in R])
    sc = StandardScaler().fit(X)
    clf = LogisticRegression(C=1.0, class_weight="balanced", max_iter=1000).fit(sc.transform(X), y)
    m = {"features": FEATS, "mean": [float(v) for v in sc.mean_], "scale": [float(v) for v in sc.scale_],
         "coef": [float(v) for v in clf.coef_[0]], "intercept": float(clf.intercept_[0])}
    th = next(float(t) for t in np.round(np.arange(0.05, 1.0, 0.01), 2)
              if (lambda o: o[2] <= max_fa * o[4])(score(rows, m, t)))
    return m, th


def check() -> None:
    """The transform is applied (identity: the same decodes; perturbed: other scores) and the
    features are the decoder's (our senone scores against its ``senlogdir`` log)."""
    import pocketsphinx as ps

    from pitbox.voice import mllr as M
    from pitbox.voice.commands import WARPS, CommandRecognizer, prepare
    from pitbox.voice.testing import OOG_TRAIN, VOICES_TRAIN, command_clips, espeak_samples, noisy_clip

    clips = [c for c in command_clips(VOICES_TRAIN[:3], OOG_TRAIN[:1], seed=100, n_noise=0) if c.kind == "command"]
    with tempfile.TemporaryDirectory() as d:
        A, b = M.identity()
        same = M.write_mllr(f"{d}/id.mllr", A, b)
        rng = np.random.default_rng(0)
        bad = M.write_mllr(f"{d}/bad.mllr", A * 1.3 + rng.normal(0, 0.05, A.shape), b + 2.0)
        res = {}
        for name, ml in (("none", None), ("identity", dict.fromkeys(WARPS, same)), ("perturbed", dict.fromkeys(WARPS, bad))):
            r = CommandRecognizer(reject=False, mllr=ml)
            res[name] = [(x.heard, x.features.get("score_pf")) for x in (r.recognise(c.samples, c.rate) for c in clips)]
        print("identity transform: same hypotheses and scores:", res["identity"] == res["none"])
        print("perturbed transform: scores changed on", sum(a != b for a, b in zip(res["perturbed"], res["none"], strict=True)),
              "of", len(clips), "clips")
        model = M.Model.load()
        cid = M.ciphone_ids(model)
        x = prepare(noisy_clip(espeak_samples("where am i losing time", "en-us", 170, 50), np.random.default_rng(1)),
                    16000)
        dec = ps.Decoder(loglevel="FATAL", lm=None, mfclogdir=d, senlogdir=d)
        dec.config["remove_noise"] = True
        dec.reinit_feat()
        cep, states = M.align(dec, x, "where am i losing time", d)
        feat = M.features(cep)
        sen = sorted(Path(d).glob("*.sen"), key=lambda p: p.stat().st_mtime_ns)[-1].read_bytes()
        off = sen.index(b"endhdr\n") + 11
        n_sen = model.logw.shape[2]
        sen2ph = {s: ph for _, _, s, ph in states}
        mine, theirs = [], []
        for t in range(len(feat)):
            n = int(np.frombuffer(sen[off:off + 2], "<i2")[0])
            off += 2
            if n == n_sen:
                ids = np.arange(n)
            else:
                ids = np.cumsum(np.frombuffer(sen[off:off + n], np.uint8).astype(int))
                off += n
            sc = np.frombuffer(sen[off:off + 2 * n], "<i2").astype(float)
            off += 2 * n
            known = [(i, s) for i, s in zip(ids, sc, strict=True) if i in sen2ph]
            if len(known) < 2:
                continue
            ours = []
            for i, _ in known:
                cb, tot = cid[sen2ph[i]], 0.0
                for f in range(3):
                    xf = feat[t, f * 13:(f + 1) * 13]
                    mu, var = model.means[cb, f], model.variances[cb, f]
                    ll = (-0.5 * (((xf - mu) ** 2) / var).sum(-1) - 0.5 * np.log(2 * np.pi * var).sum(-1)
                          + model.logw[f, :, i])
                    top = np.sort(ll)[-4:]  # pocketsphinx's top-4
                    tot += np.log(np.exp(top - top.max()).sum()) + top.max()
                ours.append(tot / (M._LOG_BASE * 1024))
            ours_a, theirs_a = np.array(ours), np.array([s for _, s in known])
            mine += list(ours_a - ours_a.mean())
            theirs += list(theirs_a - theirs_a.mean())
        print(f"senone scores within a frame, ours against pocketsphinx's (senlogdir), {len(mine)} pairs: "
              f"correlation {np.corrcoef(mine, theirs)[0, 1]:.3f} (its scores are distances: -1 is a match)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kind", default="diag", choices=["none", "full", "diag", "bias"])
    ap.add_argument("--tau", type=float, default=0.0, help="prior towards the identity, in frames")
    ap.add_argument("--sil", action="store_true", help="also estimate from silence and noise frames")
    ap.add_argument("--iters", type=int, default=2, help="align and estimate again with the transform")
    ap.add_argument("--set", default="train", choices=["train", "quick", "testsub"])
    ap.add_argument("--out", default=None)
    ap.add_argument("--refit", nargs="+", default=None, metavar="ROWS")
    ap.add_argument("--check", action="store_true", help="check the transform is applied and the features match")
    args = ap.parse_args()
    if args.check:
        check()
        return
    if args.refit:
        train = pickle.loads(Path(args.refit[0]).read_bytes())
        m, th = fit(train)
        print(f"{args.refit[0]}: shipped {score(train)}, refitted (threshold {th}) {score(train, m, th)}")
        for f in args.refit[1:]:
            rows = pickle.loads(Path(f).read_bytes())
            print(f"{f}: shipped {score(rows)}, refitted on {args.refit[0]} {score(rows, m, th)}")
        return
    from pitbox.voice.testing import OOG_TEST, OOG_TRAIN, VOICES_TEST, VOICES_TRAIN, command_clips

    t0 = time.time()
    with tempfile.TemporaryDirectory() as outdir:
        if args.set == "train":
            run(command_clips(VOICES_TRAIN, OOG_TRAIN, seed=100, n_noise=24, others_per_voice=12), VOICES_TRAIN, 500,
                args, "train", outdir)
        elif args.set == "quick":  # bench/voice_bench.py --quick
            vs = VOICES_TEST[::3]
            run(command_clips(vs, OOG_TEST, seed=0, n_noise=8), vs, 900, args, "quick", outdir)
        else:  # tests/test_voice_commands.py
            vs = VOICES_TEST[::2]
            run(command_clips(vs, OOG_TEST, seed=3, n_noise=6, others_per_voice=6), vs, 900, args, "testsub", outdir)
    print(f"   {time.time() - t0:.0f} s, load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
