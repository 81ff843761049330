"""The web page's files as the gateway serves them: types, the security headers, no way out of the
static folder, and pages that the CSP can run (no inline script, nothing from another origin)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from cardiosynth.gateway.app import create_app
from cardiosynth.gateway.routes.ui import STATIC, content_security_policy
from cardiosynth.gateway.settings import GatewaySettings
from tests.gateway.conftest import RecordingDispatcher


def _settings(tmp_path: Path, **overrides: object) -> GatewaySettings:
    values: dict[str, object] = {
        "job_store_url": f"sqlite:///{tmp_path / 'jobs.db'}",
        "api_keys": SecretStr("ui-key-0123456789"),
        "storage_dir": tmp_path / "store",
        "signing_key": SecretStr("s" * 32),
        "public_url": "http://127.0.0.1:8000",
    }
    values.update(overrides)
    return GatewaySettings(**values)  # type: ignore[arg-type]


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    return TestClient(create_app(_settings(tmp_path), RecordingDispatcher()), raise_server_exceptions=False)


def test_ui_redirects_to_the_folder_and_serves_the_page(client: TestClient) -> None:
    response = client.get("/ui", follow_redirects=False)
    assert response.status_code == 308
    assert response.headers["location"] == "/ui/"
    page = client.get("/ui/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "<title>cardiosynth</title>" in page.text
    assert client.get("/ui/index.html").text == page.text


@pytest.mark.parametrize(
    ("path", "media"),
    [
        ("app.js", "text/javascript; charset=utf-8"),
        ("viewer.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("vendor/niivue/niivue.umd.js", "text/javascript; charset=utf-8"),
        ("vendor/niivue/LICENSE", "text/plain; charset=utf-8"),
    ],
)
def test_files_have_their_types_and_the_security_headers(client: TestClient, path: str, media: str) -> None:
    response = client.get(f"/ui/{path}")
    assert response.status_code == 200
    assert response.headers["content-type"] == media
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp
    assert "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp


@pytest.mark.parametrize(
    "path",
    ["../routes/ui.py", "%2e%2e/routes/ui.py", "..%2Fapp.py", "vendor/../../app.py", "nope.js", "vendor"],
)
def test_nothing_outside_the_static_folder_is_served(client: TestClient, path: str) -> None:
    response = client.get(f"/ui/{path}")
    assert response.status_code == 404
    assert "def " not in response.text


def test_connect_src_names_the_download_links_origin(tmp_path: Path) -> None:
    local = content_security_policy(_settings(tmp_path, public_url="http://lab-host:8000/"))
    assert "connect-src 'self' http://lab-host:8000;" in local
    assert "img-src 'self' data: blob: http://lab-host:8000;" in local  # the preview PNG's link
    s3 = content_security_policy(
        _settings(
            tmp_path,
            storage="s3",
            s3_endpoint_url="http://minio:9000",
            s3_public_endpoint_url="http://localhost:9000",
        )
    )
    # The public endpoint (what the user's browser reaches), not the internal one.
    assert "connect-src 'self' http://localhost:9000;" in s3
    assert "minio" not in s3
    aws = content_security_policy(_settings(tmp_path, storage="s3"))
    assert "connect-src 'self' https://*.amazonaws.com;" in aws


class _Scan(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.inline: list[str] = []
        self.ids: set[str] = set()
        self.labelled: set[str] = set()
        self.inputs: list[dict[str, str | None]] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.inline += [f"{tag} {k}" for k in a if k.startswith("on") or k == "style"]
        if a.get("id"):
            self.ids.add(str(a["id"]))
        if tag == "script":
            self.scripts.append(a)
            self._in_script = True
        if tag == "label" and a.get("for"):
            self.labelled.add(str(a["for"]))
        if tag in ("input", "select") and a.get("type") not in ("radio", "checkbox"):
            self.inputs.append(a)

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False if tag == "script" else self._in_script

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append("script body")


def test_page_has_no_inline_code_and_a_label_for_every_input() -> None:
    scan = _Scan()
    scan.feed((STATIC / "index.html").read_text(encoding="utf-8"))
    assert scan.inline == []  # the CSP would block them: they must not exist
    assert all(s.get("src") for s in scan.scripts)
    unlabelled = [i.get("id") for i in scan.inputs if i.get("id") not in scan.labelled]
    assert unlabelled == []


def test_own_files_reference_no_other_origin() -> None:
    # The page must work on an air-gapped network: no fonts, scripts or styles from a CDN.
    for path in (STATIC / "index.html", STATIC / "app.js", STATIC / "viewer.js", STATIC / "style.css"):
        text = path.read_text(encoding="utf-8")
        assert re.findall(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, flags=re.IGNORECASE) == [], path
        assert "@import" not in text, path
        assert "url(" not in text, path


def test_niivue_is_vendored_with_its_version_and_licence() -> None:
    vendor = STATIC / "vendor" / "niivue"
    version = (vendor / "VERSION").read_text(encoding="utf-8").strip()
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    assert "BSD 2-Clause" in (vendor / "LICENSE").read_text(encoding="utf-8")
    assert f"@niivue/niivue@{version} (BSD-2-Clause)" in (vendor / "THIRD-PARTY-LICENSES").read_text(
        encoding="utf-8"
    )
    assert (vendor / "niivue.umd.js").stat().st_size > 1_000_000  # the bundle, not a pointer file
