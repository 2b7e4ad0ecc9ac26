"""The signing rule, byte for byte as docs/API.md's worked example gives it."""

import base64

from hundredx import Signer, message


def test_the_worked_example_of_docs_api_md():
    signer = Signer.from_seed(bytes(range(1, 33)))
    assert signer.public_key == "ebVWLo/mVPlAeLES6KmLp5AfhTrmlb7X4OORC60ElmQ="
    body = b'{"market":"BTC_USDC","side":"long","leverage":10,"margin":"100"}'
    h = signer.headers("POST", "/api/v1/positions", "", body, now_ms=1765000000000)
    assert h["X-Signature"] == "5gBLjv4EWSiu/T+e+/vwl66YqrHPPHrlOSNVGwAGVMK8PtH/2bzK1j7JnlEUIP251AcD5mOPg0BPzWULaeE1DA=="
    assert message("GET", "/api/v1/positions", "status=closed&limit=2", 1765000000000, 5000, b"") == (
        b"GET\n/api/v1/positions\nlimit=2&status=closed\n1765000000000\n5000\n")
    h = signer.headers("GET", "/api/v1/positions", "status=closed&limit=2", b"", now_ms=1765000000000)
    assert h["X-Signature"] == "o88ZOob/pPm+TO3Po76DlR6fN1Lj/irmnxBegK5n3thW3uxESjaY774QjJg5bnTnL4cXX+QFSka//B6NibYPAg=="
    assert len(base64.b64decode(h["X-Signature"])) == 64
