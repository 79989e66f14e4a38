"""JSON responses that can carry any string a real CRM stores.

Starlette renders JSON as UTF-8 without escapes, which fails on a lone UTF-16 surrogate (half an
emoji, "\\ud83d"): the sandbox answered 500 where HubSpot and Salesforce send the string with a
`\\ud83d` escape. Such a body is rendered with every non-ASCII character escaped instead, which
is valid JSON and decodes to the same string.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi.responses import JSONResponse as _StarletteJSONResponse


class JSONResponse(_StarletteJSONResponse):
    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return json.dumps(content, ensure_ascii=True, allow_nan=False, indent=None,
                              separators=(",", ":")).encode("ascii")
