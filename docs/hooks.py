"""MkDocs hook: the site's home page is the project's README.md.

``docs/index.md`` is only a placeholder, so the README (whose measured tables are generated
from the kept benchmark results) is the one copy: at build time the home page's Markdown is
replaced by the README's, with its ``docs/…`` links made relative to the site.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_as_home_page() -> str:
    """The README's Markdown with ``](docs/x.md)`` links rewritten to ``](x.md)``."""
    return re.sub(r"\]\(docs/", "](", README.read_text())


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """MkDocs' ``on_page_markdown`` event: the README in place of ``index.md``."""
    if page.file.src_uri == "index.md":
        return readme_as_home_page()
    return markdown
