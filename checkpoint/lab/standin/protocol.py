"""Request and response values shared by the web UI and the REST API handlers."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from email.message import Message
from http.cookies import SimpleCookie
from urllib.parse import parse_qs

HTML = "text/html; charset=UTF-8"
JSON = "application/json; charset=utf-8"
TEXT = "text/plain; charset=UTF-8"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    form: dict[str, str]
    headers: Message
    client_address: str

    @classmethod
    def parse(cls, method: str, raw_path: str, headers: Message, body: bytes, client_address: str) -> "Request":
        path, _, query_string = raw_path.partition("?")
        form: dict[str, str] = {}
        if body and headers.get_content_type() == "application/x-www-form-urlencoded":
            form = _first_values(body.decode("utf-8", errors="replace"))
        return cls(method, path, _first_values(query_string), form, headers, client_address)

    def param(self, name: str) -> str:
        """Return a parameter from the query, else from the form, like Dolibarr's GETPOST."""
        if name in self.query:
            return self.query[name]
        return self.form.get(name, "")

    def has(self, name: str) -> bool:
        return name in self.query or name in self.form

    def int_param(self, name: str) -> int:
        try:
            return int(self.param(name))
        except ValueError:
            return 0

    def cookie(self, name: str) -> str | None:
        cookies = SimpleCookie()
        for header in self.headers.get_all("Cookie") or []:
            try:
                cookies.load(header)
            except Exception:  # a malformed Cookie header is ignored, as PHP does
                continue
        morsel = cookies.get(name)
        return morsel.value if morsel else None


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = HTML
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def html(cls, text: str, status: int = 200) -> "Response":
        return cls(status, text.encode("utf-8"), HTML)

    @classmethod
    def text(cls, text: str, status: int) -> "Response":
        return cls(status, text.encode("utf-8"), TEXT)

    @classmethod
    def json(cls, value, status: int = 200) -> "Response":
        return cls(status, json.dumps(value).encode("utf-8"), JSON)

    @classmethod
    def redirect(cls, location: str) -> "Response":
        return cls(302, b"", HTML, [("Location", location)])


def _first_values(query_string: str) -> dict[str, str]:
    parsed = parse_qs(query_string, keep_blank_values=True)
    return {name: values[0] for name, values in parsed.items()}
