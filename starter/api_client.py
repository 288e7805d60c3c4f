"""A small HTTP client of the starter API that authenticates like every other caller.

The key comes from the ``FLYWHEEL_API_KEY`` environment variable (or is passed in); it is sent as a
bearer token and never logged. Every request says ``Content-Type: application/json``, which the API
requires of every POST.
"""

from __future__ import annotations

import os
from typing import Any

import httpx

API_KEY_ENV = "FLYWHEEL_API_KEY"
API_URL_ENV = "FLYWHEEL_API_URL"


class ApiCallError(Exception):
    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(f"{status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail


def auth_headers(api_key: str | None) -> dict[str, str]:
    headers = {"content-type": "application/json"}
    if api_key:
        headers["authorization"] = f"Bearer {api_key}"
    return headers


class ApiClient:
    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        self.http = httpx.Client(base_url=self.base_url, timeout=timeout, headers=auth_headers(key))

    def request(self, method: str, path: str, json: Any = None, **params: Any) -> Any:
        query = {k: v for k, v in params.items() if v is not None}
        response = self.http.request(method, path, json=json, params=query or None)
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text[:500]
            raise ApiCallError(response.status_code, str(detail))
        return response.json()

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
