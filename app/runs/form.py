"""The run spec as the dashboard's run form, generated from the spec models.

As :mod:`app.runs.options` does for the command line, the form takes which fields apply to
which pattern, and their defaults, from the models (:data:`app.runs.spec.MODELS`) rather than
from a list of its own: the page carries :func:`run_form`'s document in its ``data-run-form``
attribute, and ``static/js/fire.js`` shows only the chosen pattern's inputs, with the models'
defaults as placeholders, so the form offers exactly what the API accepts.
"""

from __future__ import annotations

from typing import Any

from app.runs.spec import MODELS


def run_form() -> dict[str, Any]:
    """What the dashboard's form needs from the models: each pattern's fields, and the
    defaults to show (fields without one, or whose default is ``None``, are left out)."""
    defaults: dict[str, Any] = {}
    for model in MODELS.values():
        for name, info in model.model_fields.items():
            default = info.get_default(call_default_factory=False)
            if isinstance(default, int | float) and not isinstance(default, bool):
                defaults.setdefault(name, default)
    return {
        "fields": {pattern: list(model.model_fields) for pattern, model in MODELS.items()},
        "defaults": defaults,
    }
