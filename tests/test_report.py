"""The HTML report route, the module inliner it is built with, and the failures' samples."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from app.lab import Lab
from app.runs.error_kinds import MAX_ERROR_SAMPLES, MAX_SAMPLE_CHARS
from app.runs.stats import RunStats
from app.web.factory import asset_dir
from app.web.jsbundle import BundleError, bundle
from app.web.report import REPORT_ENTRY
from tests.conftest import listener_port
from tests.helpers import http, wait_for_async

RUN_DOC = re.compile(r'<script type="application/json" id="run-doc">(.*?)</script>', re.S)


def web_port(lab: Lab) -> int:
    assert lab.web_port is not None
    return lab.web_port


async def finished_run(lab: Lab, spec: dict[str, object]) -> dict[str, object]:
    port = web_port(lab)
    run_id = (await http(port, "POST", "/api/runs", body=spec)).json()["id"]

    async def ended() -> dict[str, object] | None:
        doc: dict[str, object] = (await http(port, "GET", f"/api/runs/{run_id}")).json()
        return None if doc["status"] == "running" else doc

    done: dict[str, object] = await wait_for_async(ended, timeout=20)
    return done


async def test_the_report_embeds_the_run_document_the_api_answers(lab: Lab) -> None:
    # A payload that would end the page's script element if it were pasted in as it is.
    hostile = "</script><script>document.title='owned'</script><!--"
    target = f"tcp://127.0.0.1:{listener_port(lab, 'tcp')}"
    spec = {"target": target, "count": 20, "payload": {"kind": "text", "text": hostile}}
    doc = await finished_run(lab, spec)
    response = await http(web_port(lab), "GET", f"/api/runs/{doc['id']}/report.html")
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "connect-src" not in response.headers["content-security-policy"]
    assert response.headers["content-security-policy"].startswith("default-src 'none'")
    page = response.body.decode()
    embedded = RUN_DOC.findall(page)
    assert len(embedded) == 1
    assert json.loads(embedded[0]) == doc
    assert hostile not in page
    # Nothing is fetched from anywhere: no src= or href= to an asset, no stylesheet link.
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", page)


async def test_the_report_needs_the_token_and_names_an_unknown_run(lab: Lab) -> None:
    port = web_port(lab)
    refused = await http(port, "GET", "/api/runs/nope/report.html", token=None)
    assert refused.status == 401
    missing = await http(port, "GET", "/api/runs/nope/report.html")
    assert missing.status == 404
    assert missing.json()["field"] == "id"


def test_the_dashboard_modules_of_the_report_inline() -> None:
    script = bundle(asset_dir("static") / "js", REPORT_ENTRY)
    for name in ("util.js", "charts.js", "runview.js", "failures.js", "report.js"):
        assert f'modules["{name}"] = ' in script
    # A module comes after what it imports.
    assert script.index('modules["util.js"]') < script.index('modules["runview.js"]')
    assert script.index('modules["runview.js"]') < script.index('modules["report.js"]')
    assert not re.search(r"^(import|export)\b", script, re.M)


@pytest.mark.parametrize(
    "source",
    ["export default function f() {}\n", "export { a as b };\n", 'import * as u from "./u.js";\n'],
)
def test_a_module_form_the_inliner_does_not_know_is_refused(tmp_path: Path, source: str) -> None:
    (tmp_path / "m.js").write_text(source)
    (tmp_path / "u.js").write_text("export const a = 1;\n")
    with pytest.raises(BundleError):
        bundle(tmp_path, "m.js")


def test_an_import_cycle_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.js").write_text('import { b } from "./b.js";\nexport const a = 1;\n')
    (tmp_path / "b.js").write_text('import { a } from "./a.js";\nexport const b = 2;\n')
    with pytest.raises(BundleError, match="cycle"):
        bundle(tmp_path, "a.js")


def test_error_samples_are_few_distinct_and_short() -> None:
    stats = RunStats()
    for i in range(50):
        stats.record_error("refused", ConnectionRefusedError(111, f"refused #{i % 5}"))
    stats.record_error("timeout")
    stats.record_error("reset", "x" * 1000)
    summary = stats.summary(1.0, final=True)
    assert summary["errors_by_kind"] == {"refused": 50, "timeout": 1, "reset": 1}
    samples = summary["error_samples"]
    # The system's words, without the errno (app.runs.error_kinds.error_detail).
    assert samples["refused"] == [f"refused #{i}" for i in range(MAX_ERROR_SAMPLES)]
    assert samples["timeout"] == ["no reply within the timeout"]
    assert samples["reset"] == ["x" * MAX_SAMPLE_CHARS]
