"""The one table from exception family to HTTP status, and the NeutronError body."""

from __future__ import annotations

import logging

import orjson

from alcor import errors

LOG = logging.getLogger(__name__)

FAULT_MAP: tuple[tuple[type[errors.AlcorError], int], ...] = (
    (errors.BadRequest, 400),
    (errors.NotAuthorized, 403),
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.PreconditionFailed, 412),
    (errors.Unavailable, 503),
)


def status_for(exc: errors.AlcorError) -> int:
    for family, status in FAULT_MAP:
        if isinstance(exc, family):
            return status
    return 500


def error_body(type_name: str, message: str) -> bytes:
    return orjson.dumps({"NeutronError": {"type": type_name, "message": message, "detail": ""}})


def render(exc: BaseException) -> tuple[int, bytes]:
    """Status and body for any exception; unknown ones are logged and hidden behind a 500."""
    if isinstance(exc, errors.AlcorError):
        status = status_for(exc)
        if status == 500:
            LOG.error("unexpected error: %s", exc, exc_info=exc)
            return 500, error_body("InternalServerError", "Request Failed: internal server error "
                                   "while processing your request.")
        return status, error_body(type(exc).__name__, str(exc))
    LOG.error("unexpected error: %s", exc, exc_info=exc)
    return 500, error_body(
        "InternalServerError",
        "Request Failed: internal server error while processing your request.",
    )
