"""scikit-learn where it explains: which inputs explain a corner's time spread across the
driver's own laps, and which laps hold a mistake.

Per corner, over the session's valid laps: a standardised ridge regression (alpha chosen by
``RidgeCV``) of the segment time on the corner's inputs; its skill is the **leave-one-out**
R² and mean absolute error (each lap predicted by a model that never saw it); the inputs are
ranked by **permutation importance** (drop in R² when one input is shuffled, 30 repeats).
A lap holds a mistake when its segment time is more than :data:`MISTAKE_Z` robust standard
deviations above the median; it is named as the coaching engine names faults (causes before
consequences: a brake point moved together with its release is the brake point), else by the
input that contributes most to its excess (coefficient x its deviation from the median). With fewer than :data:`MIN_LAPS` valid laps
nothing is fitted and the result says so: a model of fewer laps would fit noise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pitbox.analysis.diagnosis import FAULT_METRIC, METRICS, diagnose, floored_noise

if TYPE_CHECKING:
    from pitbox.analysis.laps_analysis import SessionAnalysis

MIN_LAPS = 20
MISTAKE_Z = 3.0
FEATURES = ("brake_point_m", "peak_brake", "brake_release_m", "entry_speed_kmh", "min_speed_kmh",
            "min_speed_at_m", "throttle_pickup_m", "coasting_s", "lockup_s")


def _design(ct: pd.DataFrame) -> pd.DataFrame:
    X = ct[[f for f in FEATURES if f in ct]].apply(pd.to_numeric, errors="coerce").astype(float)
    X = X.loc[:, X.notna().mean() >= 0.8]
    X = X.fillna(X.median())
    return X.loc[:, X.std(ddof=0) > 1e-9]


def explain_corner(ct: pd.DataFrame, corner: str, min_laps: int = MIN_LAPS) -> dict[str, Any]:
    """Fit and explain one corner from its rows of the corner table (valid laps only)."""
    from sklearn.inspection import permutation_importance
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import LeaveOneOut, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    ct = ct.dropna(subset=["segment_time_s"])
    n = len(ct)
    out: dict[str, Any] = {"corner": corner, "laps": n, "fitted": False}
    if n < min_laps:
        out["message"] = (f"{corner}: {n} valid laps; at least {min_laps} are needed to say which inputs "
                          "explain the time spread (fewer would fit noise), so no model was fitted")
        return out
    X = _design(ct)
    y = ct.segment_time_s.to_numpy(float)
    if X.shape[1] == 0:
        out["message"] = f"{corner}: no input varies across the laps"
        return out
    model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))
    pred = cross_val_predict(model, X, y, cv=LeaveOneOut())
    sst = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum((y - pred) ** 2)) / sst if sst > 0 else float("nan")
    model.fit(X, y)
    imp = permutation_importance(model, X, y, n_repeats=30, random_state=0)
    scale = model[0].scale_
    coef = model[-1].coef_ / scale  # seconds per unit of each input
    ranking = sorted(
        ({"input": c, "importance": float(m), "importance_sd": float(s), "s_per_unit": float(k)}
         for c, m, s, k in zip(X.columns, imp.importances_mean, imp.importances_std, coef, strict=True)),
        key=lambda r: -r["importance"])
    med = ct.segment_time_s.median()
    sig = 1.4826 * float(np.median(np.abs(ct.segment_time_s - med)))
    mistakes = []
    if sig > 0:
        contrib = (X - X.median()) * coef
        for i, (lap, t) in enumerate(zip(ct.lap_index, ct.segment_time_s, strict=True)):
            if (t - med) / sig >= MISTAKE_Z:
                fault, main = _name_mistake(ct, ct.iloc[i])
                main = main or contrib.iloc[i].idxmax()
                dev = float(X.iloc[i][main] - X[main].median()) if main in X else None
                mistakes.append({"lap_index": int(lap), "excess_s": float(t - med), "fault": fault,
                                 "main_input": main, "input_deviation": dev})
    out.update({"fitted": True, "r2_loo": r2, "mae_loo_s": float(np.mean(np.abs(y - pred))),
                "alpha": float(model[-1].alpha_), "importance": ranking, "mistakes": mistakes,
                "message": f"{corner}: inputs explain {max(r2, 0):.0%} of the time spread (leave-one-out R² "
                           f"{r2:.2f} over {n} laps); most important: {ranking[0]['input']}"})
    return out


def _name_mistake(ct: pd.DataFrame, row: pd.Series) -> tuple[str | None, str | None]:
    """The coaching engine's diagnosis (:mod:`pitbox.analysis.diagnosis`) of one lap against
    the corner's medians (causes before consequences, so a brake point moved with its release
    is named as the brake point)."""
    cols = [m for m in METRICS if m in ct]
    base = ct[cols].apply(pd.to_numeric, errors="coerce").median()
    found = diagnose(row, base, floored_noise(ct))
    return (found[0], FAULT_METRIC[found[0]]) if found else (None, None)


def explain_corners(a: SessionAnalysis, min_laps: int = MIN_LAPS) -> list[dict[str, Any]]:
    """:func:`explain_corner` for every corner of an analysed session."""
    t = a.table
    if t.empty:
        return []
    t = t[t.valid & (t.session_id == a.session.id)]
    return [explain_corner(t[t.corner == c.name], c.name, min_laps) for c in a.corners]


def explain_messages(results: list[dict[str, Any]]) -> list[str]:
    """One line per corner, or a single line when no corner had enough laps to fit."""
    if results and not any(r["fitted"] for r in results):
        n = min(r["laps"] for r in results)
        return [f"{n} valid laps: at least {MIN_LAPS} are needed to say which inputs explain each corner's "
                "time spread (fewer would fit noise), so no model was fitted"]
    return [r["message"] for r in results]
