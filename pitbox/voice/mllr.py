"""MLLR mean adaptation of pocketsphinx's en-us model, estimated in numpy (experiment).

A global (one regression class) affine transform of every Gaussian mean, per feature
stream (the en-us ptm model has three streams of 13: cepstra, deltas, double deltas),
``mu' = A mu + b``, estimated by maximum likelihood from a few clips whose words are known
(Leggetter & Woodland 1995, diagonal covariances: each row of ``W = [A b]`` solves
``G_i w_i = k_i``), and written in the text format pocketsphinx's ``-mllr`` reads
(sphinxtrain's ``mllr_solve`` output: classes, streams, then per stream its length and per
class the rows of A, b and a variance scale h).

Statistics: each clip is force-aligned to its text by the decoder itself
(``set_align_text`` then ``set_alignment``, down to HMM states, which name their senone);
the cepstra are the very ones the decoder computed (its ``mfclogdir`` log), turned into
the 39-dim features as pocketsphinx does (batch cepstral mean subtraction, deltas over
+-2 frames, double deltas over +-3 with the ends repeated); within each frame's senone
the Gaussians of its phone's codebook share the frame by their posterior (the senone's
mixture weights from ``sendump`` times each Gaussian's likelihood).
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

_LOG_BASE = math.log(1.0001)
_SENSCR_SHIFT = 10
VARFLOOR = 1e-4
SKIP_PHONES = {"SIL", "+NSN+", "+SPN+", "+BREATH+", "+SMACK+", "+COUGH+", "+UM+", "+UH+"}


def _read_s3_header(b: bytes) -> tuple[int, str]:
    end = b.index(b"endhdr\n") + len(b"endhdr\n")
    magic = np.frombuffer(b[end:end + 4], "<u4")[0]
    return end + 4, ("<" if magic == 0x11223344 else ">")


def read_gauden(path: str) -> np.ndarray:
    """A sphinx gaussian parameter file (means or variances) as (n_mgau, n_feat, n_density, veclen)."""
    b = Path(path).read_bytes()
    off, e = _read_s3_header(b)
    n_mgau, n_feat, n_dens = np.frombuffer(b[off:off + 12], e + "i4")
    off += 12
    flen = np.frombuffer(b[off:off + 4 * n_feat], e + "i4")
    off += 4 * n_feat
    n = int(np.frombuffer(b[off:off + 4], e + "i4")[0])
    off += 4
    data = np.frombuffer(b[off:off + 4 * n], e + "f4").astype(np.float64)
    assert len(set(flen.tolist())) == 1
    return data.reshape(int(n_mgau), int(n_feat), int(n_dens), int(flen[0]))


def read_sendump(path: str, n_feat: int, n_dens: int) -> np.ndarray:
    """Mixture weights of a ``sendump`` file as natural logs, (n_feat, n_density, n_senone)."""
    b = Path(path).read_bytes()
    off = 0

    def i32() -> int:
        nonlocal off
        v = int(np.frombuffer(b[off:off + 4], "<i4")[0])
        off += 4
        return v

    n = i32()
    assert 0 < n < 1000, "sendump title length"
    off += n
    n = i32()
    off += n
    n_clust = 0
    while True:
        n = i32()
        if n == 0:
            break
        s = b[off:off + n].rstrip(b"\0").decode()
        off += n
        if s.startswith("cluster_count "):
            n_clust = int(s.split()[1])
    assert n_clust == 0, "clustered sendump not handled"
    r, c = i32(), i32()
    assert r == n_dens
    q = np.frombuffer(b[off:off + n_feat * r * c], np.uint8).reshape(n_feat, r, c)
    # pocketsphinx: q = -log_{base^(2^shift)}(w)
    return -q.astype(np.float64) * _LOG_BASE * (1 << _SENSCR_SHIFT)


@dataclass
class Model:
    means: np.ndarray       # (cb, feat, dens, 13)
    variances: np.ndarray   # floored
    logw: np.ndarray        # (feat, dens, senone)

    @classmethod
    def load(cls, hmm_dir: str | None = None) -> Model:
        if hmm_dir is None:
            from pocketsphinx import get_model_path

            hmm_dir = os.path.join(get_model_path(), "en-us", "en-us")
        m = read_gauden(os.path.join(hmm_dir, "means"))
        v = np.maximum(read_gauden(os.path.join(hmm_dir, "variances")), VARFLOOR)
        w = read_sendump(os.path.join(hmm_dir, "sendump"), m.shape[1], m.shape[2])
        return cls(m, v, w)


def read_mfc(path: str | Path) -> np.ndarray:
    """A sphinx MFC file (int32 count, float32 cepstra, big-endian) as (frames, 13)."""
    b = Path(path).read_bytes()
    for e in (">", "<"):
        n = int(np.frombuffer(b[:4], e + "i4")[0])
        if n * 4 + 4 == len(b):
            return np.frombuffer(b[4:], e + "f4").astype(np.float64).reshape(-1, 13)
    raise ValueError(f"{path}: not an MFC file")


def features(cep: np.ndarray) -> np.ndarray:
    """pocketsphinx's 1s_c_d_dd features of a whole utterance: batch CMN, then c, d, dd (T, 39)."""
    c = cep - cep.mean(axis=0)
    p = np.concatenate([np.repeat(c[:1], 3, 0), c, np.repeat(c[-1:], 3, 0)])
    T = len(c)
    t = np.arange(T) + 3
    d = p[t + 2] - p[t - 2]
    dd = (p[t + 3] - p[t - 1]) - (p[t + 1] - p[t - 3])
    return np.concatenate([c, d, dd], axis=1)


def align(decoder: Any, x: np.ndarray, text: str, logdir: str) -> tuple[np.ndarray, list[tuple[int, int, int, str]]] | None:
    """Force-align int16 ``x`` to ``text``; (the cepstra the decoder computed, [(start, n, senone, phone)])."""
    decoder.set_align_text(text)
    decoder.reinit_feat()
    decoder.start_utt()
    decoder.process_raw(x.tobytes(), False, True)
    decoder.end_utt()
    if decoder.hyp() is None:
        return None
    decoder.set_alignment()
    decoder.reinit_feat()
    decoder.start_utt()
    decoder.process_raw(x.tobytes(), False, True)
    decoder.end_utt()
    a = decoder.get_alignment()
    if a is None:
        return None
    files = sorted(Path(logdir).glob("*.mfc"), key=lambda p: p.stat().st_mtime_ns)
    cep = read_mfc(files[-1])
    phones = [(p.start, p.duration, p.name) for p in a.phones()]
    out = []
    for s in a.states():
        ph = next((n for st, du, n in phones if st <= s.start < st + du), None)
        out.append((s.start, s.duration, int(s.name), ph))
    return cep, out


class Stats:
    """MLLR sufficient statistics per stream: Gaussian occupancies and first-order sums."""

    def __init__(self, model: Model):
        self.model = model
        cb, nf, nd, L = model.means.shape
        self.occ = np.zeros((cb, nf, nd))
        self.sx = np.zeros((cb, nf, nd, L))
        self.frames = 0

    def add(self, feat: np.ndarray, states: list[tuple[int, int, int, str]], ciphones: dict[str, int],
            skip: set[str] = SKIP_PHONES, transform: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        m = self.model
        cb_n, nf, nd, L = m.means.shape
        for start, dur, sen, ph in states:
            if ph is None or ph in skip:
                continue
            cb = ciphones[ph]
            X = feat[start:start + dur]
            if len(X) == 0:
                continue
            self.frames += len(X)
            for f in range(nf):
                xf = X[:, f * L:(f + 1) * L]
                mu, var = m.means[cb, f], m.variances[cb, f]
                if transform is not None:
                    mu = mu @ transform[0][f].T + transform[1][f]
                ll = (-0.5 * (((xf[:, None, :] - mu[None]) ** 2) / var[None]).sum(-1)
                      - 0.5 * np.log(2 * np.pi * var).sum(-1)[None] + m.logw[f, :, sen][None])
                ll -= ll.max(axis=1, keepdims=True)
                g = np.exp(ll)
                g /= g.sum(axis=1, keepdims=True)
                self.occ[cb, f] += g.sum(0)
                self.sx[cb, f] += g.T @ xf

    def solve(self, kind: str = "full", tau: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """(A (n_feat, L, L), b (n_feat, L)): ``kind`` "full", "diag" (diagonal A) or "bias"; ``tau``
        pulls each row towards the identity (a prior worth ``tau`` frames of occupancy)."""
        m = self.model
        cb_n, nf, nd, L = m.means.shape
        A = np.zeros((nf, L, L))
        b = np.zeros((nf, L))
        for f in range(nf):
            mu = m.means[:, f].reshape(-1, L)
            iv = 1.0 / m.variances[:, f].reshape(-1, L)
            occ = self.occ[:, f].reshape(-1)
            sx = self.sx[:, f].reshape(-1, L)
            xi = np.concatenate([mu, np.ones((len(mu), 1))], axis=1)  # (G, L+1)
            for i in range(L):
                wgt = occ * iv[:, i]
                if kind == "full":
                    cols = list(range(L + 1))
                elif kind == "diag":
                    cols = [i, L]
                else:
                    cols = [L]
                Xi = xi[:, cols]
                G = (Xi * wgt[:, None]).T @ Xi
                k = (Xi * (iv[:, i] * sx[:, i])[:, None]).sum(0)
                w0 = np.array([1.0 if c == i else 0.0 for c in cols])
                if kind == "bias":
                    w0 = np.zeros(1)
                    # bias only: mu' = mu + b, so G b = sum iv (sx - occ mu)
                    k = k - (iv[:, i] * occ * mu[:, i]).sum()
                if tau > 0:
                    scale = np.trace(G) / len(cols) / max(occ.sum(), 1.0)
                    G = G + tau * scale * np.eye(len(cols))
                    k = k + tau * scale * w0
                w = np.linalg.solve(G, k)
                row = np.zeros(L + 1)
                if kind == "bias":
                    row[i] = 1.0
                    row[L] = w[0]
                else:
                    row[cols] = w
                A[f, i] = row[:L]
                b[f, i] = row[L]
        return A, b


def identity(n_feat: int = 3, L: int = 13) -> tuple[np.ndarray, np.ndarray]:
    return np.stack([np.eye(L)] * n_feat), np.zeros((n_feat, L))


def write_mllr(path: str | Path, A: np.ndarray, b: np.ndarray) -> Path:
    """The transform in the text format of pocketsphinx's ``-mllr`` (one class, h = 1)."""
    nf, L, _ = A.shape
    lines = ["1", str(nf)]
    for f in range(nf):
        lines.append(str(L))
        lines += [" ".join(f"{v:.8g}" for v in A[f, i]) for i in range(L)]
        lines.append(" ".join(f"{v:.8g}" for v in b[f]))
        lines.append(" ".join("1" for _ in range(L)))
    p = Path(path)
    p.write_text("\n".join(lines) + "\n")
    return p



def ciphone_ids(model: Model) -> dict[str, int]:
    """Codebook index of each base phone: the model's CI phones in sorted (byte) order, checked
    against the CI senone ids the aligner reports (senone = 3 * phone + state)."""
    names = sorted(["+NSN+", "+SPN+", "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F",
                    "G", "HH", "IH", "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "SIL", "T",
                    "TH", "UH", "UW", "V", "W", "Y", "Z", "ZH"])
    assert len(names) == model.means.shape[0]
    return {n: i for i, n in enumerate(names)}


def tmpdir() -> str:
    return tempfile.mkdtemp(prefix="pitbox-mllr-")
