"""A live Dash app for teachers: move a lever, the model runs again, the figures redraw.

``crisis app`` serves it under ``/server/``, beside the page that runs the model in the
browser (:func:`make_live_app`); for a model the page cannot take, at ``/``.

- A slider for every constant with a Vensim range ``[min, max]`` (the model's levers),
  starting at the scenario's value (or the model's default).
- Every move re-simulates through :class:`Simulator`, the one place the app runs the
  model (:func:`pysd_runner.run`, on the compiled kernel wherever the model allows it).
- Pin up to :data:`MAX_PINS` runs to compare with; reset the levers; export the current
  settings as a scenario TOML file (the format of :mod:`pysd_runner.scenarios`).
- The page address holds the settings (``?phillips_slope=1.4&pin=phillips_slope:1.6``),
  so a link reproduces the view.
- Every input is validated on the server: values from the sliders, the address and the
  pinned runs. A malformed or out-of-range value is rejected with a visible message and
  the lever keeps its scenario value; the app keeps running.
- Feedback-loop switches, when the model names its loops (``loops.toml`` beside the model,
  see :mod:`pysd_runner.analysis.loops`): one per named loop; switching a loop off knocks out the
  link that cuts it (:func:`pysd_runner.cutting_link`), holding the link's source at
  its initial value as the target sees it. The address holds them too (``off=R1,B2``).
  Models without named loops get no switch.

The app binds to 127.0.0.1 unless told otherwise (``crisis app --host``).
"""

from __future__ import annotations

from .live import make_live_app
from .page import make_app
from .settings import (
    Lever, LoopSwitch, MAX_PINS, OFF_KEY, Simulator, decode_settings, encode_settings, export_scenario, levers_of, loop_switches,
)

__all__ = [
    "make_app",
    "make_live_app",
    "Simulator",
    "Lever",
    "LoopSwitch",
    "levers_of",
    "export_scenario",
    "loop_switches",
    "MAX_PINS",
    "OFF_KEY",
    "encode_settings",
    "decode_settings",
]
