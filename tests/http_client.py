"""A small real-HTTP client for tests against ``live_server``: cookies and CSRF."""

import http.cookiejar
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass


@dataclass
class Page:
    status: int
    url: str
    text: str


class Browser:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.cookies)
        )

    def get(self, path_or_url: str) -> Page:
        return self._open(urllib.request.Request(self._url(path_or_url)))

    def submit(self, path: str, fields: dict[str, str]) -> Page:
        """GET the form page, then POST ``fields`` with its CSRF token."""
        form = self.get(path)
        match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
        assert match, f"no CSRF token on {path}"
        body = urllib.parse.urlencode(
            {"csrfmiddlewaretoken": match.group(1), **fields}
        ).encode()
        request = urllib.request.Request(self._url(path), data=body, method="POST")
        request.add_header("Referer", self._url(path))
        return self._open(request)

    def _url(self, path_or_url: str) -> str:
        if path_or_url.startswith("http"):
            return path_or_url
        return self.base_url + path_or_url

    def _open(self, request: urllib.request.Request) -> Page:
        try:
            with self.opener.open(request, timeout=30) as response:
                text = response.read().decode()
                return Page(response.status, response.url, text)
        except urllib.error.HTTPError as error:
            return Page(error.code, error.url or "", error.read().decode())
