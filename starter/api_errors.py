"""The API's own error: raised by routes, answered as ``{"detail": ...}`` with its status code."""

from __future__ import annotations


class ApiError(Exception):
    def __init__(self, status_code: int, detail: str):
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail
