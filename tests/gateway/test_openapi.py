from __future__ import annotations

from pathlib import Path

import yaml

from cardiosynth.gateway.openapi import SPEC_PATH, openapi_document, openapi_yaml

ROOT = Path(__file__).resolve().parents[2]


def test_checked_in_spec_matches_the_app() -> None:
    checked_in = (ROOT / SPEC_PATH).read_text(encoding="utf-8")
    assert checked_in == openapi_yaml(), "api-spec/openapi.yaml is stale: run `cardiosynth openapi`"


def test_spec_documents_the_api() -> None:
    doc = openapi_document()
    assert {"/synthesize", "/jobs", "/jobs/{job_id}", "/jobs/{job_id}/results", "/pathologies", "/models",
            "/healthz", "/readyz", "/metrics"} <= set(doc["paths"])  # fmt: skip
    post = doc["paths"]["/synthesize"]["post"]
    assert "202" in post["responses"]
    assert {"401", "409", "422", "429", "503"} <= set(post["responses"])
    schemas = doc["components"]["schemas"]
    assert schemas["SynthesizeRequest"]["examples"][0] == {"pathology": "HCM", "n": 5}
    assert "examples" in schemas["JobOut"]
    assert "examples" in schemas["Problem"]
    assert yaml.safe_load(openapi_yaml()) == doc
    # Every request and response body has an example.
    for name, body in schemas.items():
        if name in ("HTTPValidationError", "ValidationError"):
            continue  # FastAPI's own; our handlers answer with Problem instead
        assert "examples" in body, name
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            ok = op["responses"].get("200") or op["responses"].get("202")
            content = ok.get("content", {})
            documented = [c for c in content.values() if "example" in c or "$ref" in str(c.get("schema"))]
            assert documented, (method, path)
