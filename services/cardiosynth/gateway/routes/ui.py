"""The web page (``/ui``): static files shipped in the package, served with a strict security policy.

No build step and no server-side rendering: ``gateway/static/ui`` holds the page as the browser runs
it (HTML, CSS, ES modules) and the vendored NiiVue bundle (``scripts/refresh-niivue.sh``). The page
talks to the same API as every other client, with the API key from the user in a request header.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse, RedirectResponse

from cardiosynth.gateway.deps import Services, services
from cardiosynth.gateway.problems import ProblemError
from cardiosynth.gateway.settings import GatewaySettings

STATIC = (Path(__file__).resolve().parent.parent / "static" / "ui").resolve()

# Types by suffix, not by the platform's mimetypes table (which differs between systems and has
# served .js as text/plain, which browsers refuse for module scripts under nosniff).
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}

router = APIRouter(include_in_schema=False)


def _origin(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy(settings: GatewaySettings) -> str:
    """The page's CSP: only its own files, and reads of the API and of the download links.

    Download links point at the gateway itself (local storage: ``public_url``, which may name another
    host than the one the page was opened at) or at the S3 endpoint the user's machine reaches, so
    that origin, and only that one, is added to ``connect-src`` (the page fetches NIfTI files there).
    No ``unsafe-inline`` or ``unsafe-eval`` anywhere: the page has no inline script, handler or style,
    and NiiVue's NIfTI path needs neither WebAssembly nor workers (checked in tests/ui)."""
    connect = ["'self'"]
    if settings.storage == "local":
        extra = _origin(settings.public_url)
    else:
        extra = _origin(settings.s3_public_endpoint_url or settings.s3_endpoint_url)
        if extra is None:  # AWS itself: presigned links name the bucket's regional host
            extra = "https://*.amazonaws.com"
    if extra:
        connect.append(extra)
    # NiiVue draws its text from a font atlas it decodes into an image of its own (data:, blob:);
    # the worker's preview PNG comes through its signed link like the volumes.
    images = ["'self'", "data:", "blob:", *connect[1:]]
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            f"img-src {' '.join(images)}",
            "font-src 'self'",
            f"connect-src {' '.join(connect)}",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


def security_headers(settings: GatewaySettings) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(settings),
        "X-Content-Type-Options": "nosniff",
        # The page's own address carries no secret, but keep it to ourselves all the same.
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Opener-Policy": "same-origin",
        # The files change with the installed package: revalidate instead of serving a stale page.
        "Cache-Control": "no-cache",
    }


@router.get("/ui")
def ui_root() -> RedirectResponse:
    # The page's relative paths (app.js, vendor/...) resolve under /ui/ only with the slash.
    return RedirectResponse("/ui/", status_code=308)


@router.get("/ui/{path:path}")
def ui_file(path: str, svc: Annotated[Services, Depends(services)]) -> FileResponse:
    """A file of the page; ``/ui/`` is ``index.html``. Paths outside the static folder are 404."""
    target = (STATIC / (path or "index.html")).resolve()
    if not target.is_relative_to(STATIC) or not target.is_file():
        raise ProblemError(404, "no such page")
    media_type = TYPES.get(target.suffix, "text/plain; charset=utf-8")
    return FileResponse(target, media_type=media_type, headers=security_headers(svc.settings))
