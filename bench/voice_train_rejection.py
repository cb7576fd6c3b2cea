"""Fit the voice commands' rejection model (pitbox.voice.commands.REJECT_MODEL).

Synthesizes training clips with espeak-ng in the *training* voices and out-of-grammar
phrases (pitbox.voice.testing.VOICES_TRAIN, OOG_TRAIN: none of them is used by the tests or
by bench/voice_bench.py), in engine noise at 6 dB, decodes them with the command grammar and
the phone loop, and fits a logistic regression (scikit-learn) on the eight measures: label 1
when the grammar heard the command that was said, 0 otherwise. Prints the model to paste into
commands.py, and its accuracy on the held-out test clips.

    .venv/bin/python bench/voice_train_rejection.py [--seeds 100 101] [--test-seed 0]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def features_of(clips, rec):
    rows = []
    for c in clips:
        r = rec.recognise(c.samples, c.rate)
        label = int(c.kind == "command" and r.command is not None and r.phrase == c.phrase)
        rows.append((c, r, label))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[100, 101])
    ap.add_argument("--test-seed", type=int, default=0)
    ap.add_argument("--C", type=float, default=1.0)
    ap.add_argument("--features", nargs="+", default=None,
                    help="measures to fit on (default: every measure CommandRecognizer.features computes)")
    ap.add_argument("--save", default=None, help="also write the model as JSON to this file")
    args = ap.parse_args()

    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from pitbox.voice.commands import REJECT_MODEL, CommandRecognizer
    from pitbox.voice.testing import OOG_TEST, OOG_TRAIN, VOICES_TEST, VOICES_TRAIN, command_clips

    rec = CommandRecognizer(reject=False)
    names = args.features
    train = []
    for s in args.seeds:
        t = time.perf_counter()
        clips = command_clips(VOICES_TRAIN, OOG_TRAIN, seed=s, n_noise=24)
        train += features_of(clips, rec)
        print(f"seed {s}: {len(clips)} clips in {time.perf_counter() - t:.0f} s", flush=True)
    if names is None:
        names = next(list(r.features) for _, r, _ in train if r.features)
    test = features_of(command_clips(VOICES_TEST, OOG_TEST, seed=args.test_seed, n_noise=24), rec)
    sets = {"all measures": names, "the shipped model's measures": REJECT_MODEL["features"]}
    for label, feats in sets.items():
        X = np.array([[r.features[n] for n in feats] for _, r, _ in train if r.features])
        y = np.array([lab for _, r, lab in train if r.features])
        sc = StandardScaler().fit(X)
        clf = LogisticRegression(C=args.C, class_weight="balanced", max_iter=1000).fit(sc.transform(X), y)
        model = {"features": list(feats), "mean": [round(float(v), 6) for v in sc.mean_],
                 "scale": [round(float(v), 6) for v in sc.scale_],
                 "coef": [round(float(v), 6) for v in clf.coef_[0]], "intercept": round(float(clf.intercept_[0]), 6)}
        print(f"\n# fitted on {label}\nREJECT_MODEL =", json.dumps(model, indent=4), flush=True)
        if args.save and label == "all measures":
            with open(args.save, "w") as f:
                json.dump(model, f)
        for th in (0.3, 0.4, 0.5, 0.6, 0.7):
            ok = fa = wrong = 0
            for c, r, _ in test:
                acc = bool(r.features) and CommandRecognizer.confidence(r.features, model) >= th
                if c.kind == "command":
                    ok += acc and r.phrase == c.phrase
                    wrong += acc and r.phrase != c.phrase
                else:
                    fa += acc
            n_cmd = sum(c.kind == "command" for c, _, _ in test)
            n_other = len(test) - n_cmd
            print(f"threshold {th}: recognised {ok}/{n_cmd} ({ok / n_cmd:.1%}), wrong command {wrong}, "
                  f"accepted out of grammar or noise {fa}/{n_other} ({fa / n_other:.1%})", flush=True)

if __name__ == "__main__":
    main()
