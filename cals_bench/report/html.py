"""The HTML side: a jinja2 environment with autoescaping always on, and page writing.

Stylesheet and sorter script are inlined into each page (no CDN, nothing fetched at view time). The page's
Content-Security-Policy allows only that one inline script (by its sha256), inline styles and local
images, so even a value that escaped escaping could not run code or reach the network.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import jinja2

_HERE = Path(__file__).resolve().parent


@cache
def environment() -> jinja2.Environment:
    """Templates from ``report/templates``; autoescape is on for every template, whatever its name."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_HERE / "templates")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


@cache
def _static(name: str) -> str:
    return (_HERE / "static" / name).read_text(encoding="utf-8")


def _version() -> str:
    try:
        return metadata.version("cals-bench")
    except metadata.PackageNotFoundError:
        return "dev"


def script_hash(js: str) -> str:
    """The CSP source expression allowing exactly this inline script."""
    return "sha256-" + base64.b64encode(hashlib.sha256(js.encode("utf-8")).digest()).decode("ascii")


def render_page(template: str, path: Path, store_root: Path | str, **context: Any) -> Path:
    """Render ``template`` with ``context`` (plus stylesheet, script and footer fields) to ``path``."""
    js = _static("sort.js")
    page = (
        environment()
        .get_template(template)
        .render(
            css=_static("report.css"),
            js=js,
            script_hash=script_hash(js),
            version=_version(),
            rendered_at=time.strftime("%Y-%m-%d %H:%M %Z"),
            store_root=str(store_root),
            **context,
        )
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.part")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)
    return path
