"""What ``crisis app`` serves: the model running in the page, with the server behind it.

At ``/`` the page of ``crisis web`` (:func:`dashboards.web.build_web`): the model runs in
the browser, so a slider move redraws in tens of milliseconds with no round trip, and the
page checks every value itself. At ``/server/`` the server-run Dash app
(:func:`dashboards.app.make_app`), for what the page cannot do: every engine including
PySD's own, the variables table, and models the page cannot take. For such a model (one the
kernel does not translate) the Dash app is served at ``/`` instead, and the reason, naming
the element, is returned.
"""

from __future__ import annotations

from .page import make_app

__all__ = ["make_live_app"]


def make_live_app(model, *, scenario=None):
    """``(dash_app, reason)``: the app to serve, and why the model does not run in the page
    (None when it does). Serve ``dash_app.server`` (a Flask app), or call ``dash_app.run``."""
    from pysd_runner import CompiledModel, compile_model, list_scenarios, load_scenario

    from ..errors import DashboardInputError
    from ..web import build_web

    if not isinstance(model, CompiledModel):
        model = compile_model(model)
    names = None
    if scenario is not None:
        first = load_scenario(scenario, model)
        others = [n for n in list_scenarios(model) if n != first.name]
        names = [scenario if first.name not in list_scenarios(model) else first.name, *others]
    try:
        page = build_web(model, names, server_link="server/")
    except DashboardInputError as exc:
        return make_app(model, scenario=scenario), str(exc)
    app = make_app(model, scenario=scenario, prefix="/server/")

    @app.server.route("/")
    def _page():
        from flask import Response

        return Response(page, mimetype="text/html")

    return app, None
