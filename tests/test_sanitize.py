"""Server text made safe: origins of redirect targets, redaction, strict JSON."""

from __future__ import annotations

import pytest

from ocr_async.sanitize import url_origin

BASE = "https://api-ocr.nhncloudservice.com/v1.1/appkeys/k/general"


@pytest.mark.parametrize(
    ("location", "origin"),
    [
        pytest.param("https://evil.example/steal?token=t", "https://evil.example", id="absolute"),
        pytest.param("http://u:pw@evil.example:8080/x", "http://evil.example:8080", id="userinfo"),
        pytest.param("/elsewhere?sig=1", "https://api-ocr.nhncloudservice.com", id="relative"),
        pytest.param("//evil.example/x", "https://evil.example", id="scheme-relative"),
        pytest.param("http://[::1]:9/x", "http://[::1]:9", id="ipv6"),
        pytest.param("HTTP://EVIL.Example/", "http://evil.example", id="case"),
        pytest.param("ftp://evil.example/x", "an unreadable address", id="not-http"),
        pytest.param("http://evil.example:99999/", "an unreadable address", id="bad-port"),
        pytest.param("http://ev\x1bil/", "an unreadable address", id="control"),
        pytest.param("http://" + "a" * 300 + "/", "an unreadable address", id="long-host"),
    ],
)
def test_url_origin_shows_scheme_host_and_port_only(location: str, origin: str) -> None:
    assert url_origin(location, BASE) == origin
