"""A cut-off answer from the enrichment API (a chunked body broken off, a gzip body that does not
decode) is a transport failure like a timeout: retried, never a crash of the enrich step. Driven
through the real RequestsTransport with an in-process adapter (no sockets, no sleeps)."""

from __future__ import annotations

import json

import pytest
import requests
from requests.adapters import BaseAdapter

from leadflow.enrich.http_provider import RequestsTransport, TransportError

from enrich_fakes import company_body


class CutOffThenAnswer(BaseAdapter):
    """Breaks the first `cut` answers off with `error`, then answers 200 with a company."""

    def __init__(self, error: Exception, cut: int) -> None:
        super().__init__()
        self.error, self.cut, self.calls = error, cut, 0

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        self.calls += 1
        if self.calls <= self.cut:
            raise self.error
        response = requests.Response()
        response.status_code = 200
        response._content = json.dumps(company_body("a.com")).encode()
        response.headers["Content-Type"] = "application/json"
        response.request, response.url = request, request.url
        return response

    def close(self) -> None:
        pass


CUT_OFF = [requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead"),
           requests.exceptions.ContentDecodingError("failed to decode gzip body")]


def _transport(adapter: BaseAdapter) -> RequestsTransport:
    transport = RequestsTransport()
    transport.session.mount("http://", adapter)
    return transport


@pytest.mark.parametrize("error", CUT_OFF, ids=type)
def test_given_cut_off_answer_then_transport_raises_transport_error_named_after_it(error) -> None:
    transport = _transport(CutOffThenAnswer(error, cut=1))
    with pytest.raises(TransportError, match=type(error).__name__):
        transport.get("http://127.0.0.1:9/v1/companies", params={"domain": "a.com"}, headers={}, timeout=1.0)


@pytest.mark.parametrize("error", CUT_OFF, ids=type)
def test_given_cut_off_answers_then_provider_retries_and_matches(error, make_provider, clock) -> None:
    adapter = CutOffThenAnswer(error, cut=2)
    provider = make_provider(_transport(adapter), backoff_base_s=0.5, backoff_max_s=10, max_attempts=4)
    found = provider.lookup(["a.com"], 0)
    assert found["status"].tolist() == ["matched"]
    assert adapter.calls == 3
    assert provider.stats["transport_errors"] == 2 and provider.stats[f"transport_{type(error).__name__}"] == 2
    assert clock.sleeps == [0.5, 1.0]
