"""HubSpot-shaped error bodies and the exception the sandbox raises to send one.

HubSpot answers errors with `{"status":"error","message","correlationId","category", ...}`; batch
endpoints list per-record failures as `StandardError` objects. The official SDK validates those
objects client side (it needs `context`, `links` and `errors`), so every builder here fills them.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any


def correlation_id() -> str:
    return str(uuid.uuid4())


def error_body(message: str, category: str, **extra: Any) -> dict[str, Any]:
    """A top-level HubSpot error body (401, 400, 404, 409 ...)."""
    body: dict[str, Any] = {
        "status": "error",
        "message": message,
        "correlationId": correlation_id(),
        "category": category,
    }
    body.update(extra)
    return body


class HubSpotError(Exception):
    """Raised by handlers; the app turns it into a JSON response with `status_code`."""

    def __init__(
        self,
        status_code: int,
        category: str,
        message: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        context: dict[str, list[str]] | None = None,
        sub_category: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.category = category
        self.message = message
        self.errors = errors
        self.context = context
        self.sub_category = sub_category

    def body(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if self.errors is not None:
            extra["errors"] = self.errors
        if self.context is not None:
            extra["context"] = self.context
        if self.sub_category is not None:
            extra["subCategory"] = self.sub_category
        return error_body(self.message, self.category, **extra)


def validation_error(message: str, **kwargs: Any) -> HubSpotError:
    return HubSpotError(400, "VALIDATION_ERROR", message, **kwargs)


def not_found(object_label: str, object_id: str) -> HubSpotError:
    # HubSpot answers a missing record with a 404 and an empty-ish message of this kind.
    return HubSpotError(404, "OBJECT_NOT_FOUND", f"resource not found: {object_label} {object_id} does not exist")


@dataclass
class PropertyProblem:
    """One rejected property value of one record (HubSpot's per-property validation result)."""

    name: str
    code: str  # PROPERTY_DOESNT_EXIST, INVALID_OPTION, INVALID_NUMBER, READ_ONLY_VALUE, ...
    message: str

    def as_hubspot(self) -> dict[str, Any]:
        return {
            "isValid": False,
            "message": self.message,
            "error": self.code,
            "name": self.name,
            "localizedErrorMessage": self.message,
        }


def property_problems_message(problems: list[PropertyProblem]) -> str:
    """HubSpot embeds the per-property results as JSON text inside the message."""
    return "Property values were not valid: " + json.dumps([p.as_hubspot() for p in problems], separators=(",", ":"))


@dataclass
class RecordError:
    """A failed record of a batch call; grouped into `errors[]` of a 207 answer."""

    record_id: str
    category: str  # OBJECT_NOT_FOUND, VALIDATION_ERROR, CONFLICT, LOCKED, RATE_LIMITS
    message: str
    sub_category: str | None = None
    http_status: int | None = None  # e.g. 423 for a locked record (transient)
    details: list[dict[str, Any]] = field(default_factory=list)


def batch_errors(record_errors: list[RecordError]) -> list[dict[str, Any]]:
    """Group record errors the way HubSpot does: one entry per (category, message) with all ids."""
    grouped: dict[tuple[str, str, str | None, int | None], list[str]] = {}
    details: dict[tuple[str, str, str | None, int | None], list[dict[str, Any]]] = {}
    for err in record_errors:
        key = (err.category, err.message, err.sub_category, err.http_status)
        grouped.setdefault(key, []).append(err.record_id)
        details.setdefault(key, []).extend(err.details)
    out: list[dict[str, Any]] = []
    for key, ids in grouped.items():
        category, message, sub_category, http_status = key
        entry: dict[str, Any] = {
            "status": "error",
            "category": category,
            "message": message,
            "context": {"ids": ids},
            "links": {},
            "errors": details[key],
        }
        if sub_category:
            entry["subCategory"] = sub_category
        if http_status is not None:
            # The per-record HTTP-style status (423 locked, 429 ...) so raw-HTTP clients can tell
            # transient failures apart; the SDK ignores unknown keys.
            entry["httpStatus"] = str(http_status)
        out.append(entry)
    return out
