"""The web layer: dashboard, JSON API and live feeds, on Hypercorn's trio worker.

It depends on :class:`app.web.deps.WebDeps` only, never on the Lab; build it with
:func:`app.web.factory.create_web` and serve it with :func:`app.web.server.serve_web`.
"""
