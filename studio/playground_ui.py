"""The Playground page's shared parts: the loaded artifact (one per server), running a view under its
lock, its last result, the compiled-vs-eager latency row and the form every view draws. The page
(views/playground.py) keeps one renderer per view kind."""

from pathlib import Path
from typing import Callable

import streamlit as st

from studio import playground, ui

RESULT_KEY = "playground_result"


@st.cache_resource(max_entries=3, show_spinner="Loading the compiled model and its eager PyTorch source…")
def loaded_artifact(path: str, created: str, demo_root: str, trust_remote_code: bool = False) -> playground.LoadedArtifact:
    """Shared by every session (hold .lock to run it); `created` is in the key so a replaced artifact reloads,
    and the consent to run its source's own code too (one session's consent is not another's)."""
    return playground.load(Path(path), Path(demo_root), trust_remote_code)


def run(loaded: playground.LoadedArtifact, *inputs, busy: str = "Running…") -> None:
    """Run the artifact's view on the inputs under the model's lock and keep its result for this artifact (errors: st.error)."""
    try:
        with st.spinner(busy), loaded.lock:
            result = playground.run_view(loaded, *inputs)
    except Exception as error:  # engine errors are one line; anything else is summarised too
        st.session_state.pop(RESULT_KEY, None)
        ui.show_error(error)
        return
    st.session_state[RESULT_KEY] = (str(loaded.path), loaded.manifest.created, result)


def last_result(loaded: playground.LoadedArtifact):
    stored = st.session_state.get(RESULT_KEY)
    if stored and stored[:2] == (str(loaded.path), loaded.manifest.created):
        return stored[2]
    return None


def measure(loaded: playground.LoadedArtifact, stats: playground.RunStats) -> None:
    """Time both models the benchmark's way, once per result, while its answer is already on screen."""
    try:
        with st.spinner("Timing the compiled and eager models (alternating calls, as the Benchmark page does)…"), loaded.lock:
            stats.measure()
    except Exception as error:  # the answer stays; only the figures are missing
        ui.show_error(error)
    finally:
        stats.measure = None


def speedup_text(stats: playground.RunStats) -> str:
    if stats.noisy:
        return "noisy"
    if not stats.speedup:
        return "—"
    return f"{stats.speedup:.2f}×" if stats.speedup >= 0.1 else f"{stats.speedup:.2g}×"


def difference_text(stats: playground.RunStats) -> str:
    """How far the compiled outputs are from eager's, in words ("" when they were not compared)."""
    if stats.max_abs_diff is None:
        return ""
    if stats.max_abs_diff == 0:
        return " Compiled and eager outputs are identical."
    scale = " (pixels, 0-1 scale)" if stats.unit == "image" else ""
    return f" Compiled and eager outputs differ by at most {stats.max_abs_diff:.2g}{scale}."


def short_duration(seconds: float) -> str:
    return ui.fmt_ms(seconds) if seconds < 1 else ui.fmt_duration(seconds)


def latency_row(loaded: playground.LoadedArtifact, stats: playground.RunStats) -> None:
    if stats.measure is not None:
        measure(loaded, stats)
    show = ui.fmt_duration if stats.unit == "image" else ui.fmt_ms
    compiled, eager, speedup = st.columns(3)
    compiled.metric(f"Compiled ({loaded.manifest.backend})", show(stats.compiled_s) if stats.compiled_s else "—", help=f"per {stats.unit}")
    eager.metric("Eager PyTorch", show(stats.eager_s) if stats.eager_s else "—", help=f"per {stats.unit}; the source model, uncompiled")
    speedup.metric("Speed-up", speedup_text(stats),
                   help="too noisy to tell which is faster (the notes below say why)" if stats.noisy
                   else "eager time / compiled time")
    how = stats.method + difference_text(stats)
    if stats.max_abs_diff is None and loaded.eager_note:
        how += " Compiled latency only: the eager model is not available (see above)."
    if per_step := "; ".join(f"{side} {short_duration(seconds)} per step" for side, seconds in stats.seconds_per_step.items() if seconds):
        how += f" Denoising: {per_step}."
    st.caption(how.strip())
    for note in stats.notes:
        st.caption(f":material/info: {note}")


def form(loaded: playground.LoadedArtifact, button: str, fields: Callable[[], tuple], *extra, busy: str = "Running…") -> tuple:
    """The view's form of `fields` (which draws the inputs and returns their values); on `button`, the
    view runs on those values (and `extra` arguments). Returns the values, for showing the result."""
    with st.form(loaded.view):
        values = fields()
        submitted = st.form_submit_button(button, type="primary")
    if submitted:
        run(loaded, *values, *extra, busy=busy)
    return values
