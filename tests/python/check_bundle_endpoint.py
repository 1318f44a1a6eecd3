#!/usr/bin/env python3
"""An independent client for a Warden SPIFFE bundle endpoint (https_spiffe profile),
using the Python `spiffe` package (py-spiffe) and `cryptography`, nothing of Warden's:

- fetches the bundle over TLS (no verification yet: the bundle is what we verify with),
- checks the SPIFFE bundle format (JWKS, `use: x509-svid` keys with one `x5c` each,
  `spiffe_sequence`, `spiffe_refresh_hint`) and parses the authorities with py-spiffe's
  `X509Bundle`,
- checks the endpoint's certificate is an X509-SVID (py-spiffe's leaf rules) of the
  trust domain with the expected SPIFFE ID, signed by one of the bundle's authorities.

Usage: check_bundle_endpoint.py HOST:PORT TRUST_DOMAIN ENDPOINT_SPIFFE_ID
Prints one JSON line with what it found; exit 0 when every check passes.
"""

import base64
import json
import socket
import ssl
import sys

from cryptography import x509
from spiffe import TrustDomain, X509Bundle
from spiffe.svid import x509_svid


def fetch(host: str, port: int) -> "tuple[bytes, bytes]":
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, port), timeout=10) as raw:
        with ctx.wrap_socket(raw) as tls:
            leaf = tls.getpeercert(binary_form=True)
            tls.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"status line: {head.splitlines()[0]!r}")
    if b"transfer-encoding: chunked" in head.lower():
        raise SystemExit("unexpected chunked answer")
    return body, leaf


def main() -> None:
    addr, td_name, endpoint_id = sys.argv[1], sys.argv[2], sys.argv[3]
    host, port = addr.rsplit(":", 1)
    body, leaf_der = fetch(host, int(port))
    doc = json.loads(body)
    assert isinstance(doc.get("spiffe_sequence"), int), "spiffe_sequence missing"
    assert isinstance(doc.get("spiffe_refresh_hint"), int), "spiffe_refresh_hint missing"
    ders = []
    for key in doc["keys"]:
        if key.get("use") == "x509-svid":
            assert len(key["x5c"]) == 1, "x5c must hold one certificate"
            ders.append(base64.b64decode(key["x5c"][0]))
    assert ders, "no x509-svid key"
    td = TrustDomain(td_name)
    bundle = X509Bundle.parse_raw(td, b"".join(ders))
    authorities = bundle.x509_authorities

    leaf = x509.load_der_x509_certificate(leaf_der)
    x509_svid._validate_chain([leaf])
    spiffe_id = x509_svid._extract_spiffe_id(leaf)
    x509_svid._validate_leaf_spiffe_id(spiffe_id)
    assert str(spiffe_id) == endpoint_id, f"endpoint SVID is {spiffe_id}, wanted {endpoint_id}"
    assert spiffe_id.trust_domain == td, f"endpoint SVID of {spiffe_id.trust_domain}"
    signed = False
    for ca in authorities:
        try:
            leaf.verify_directly_issued_by(ca)
            signed = True
        except Exception:
            pass
    assert signed, "the endpoint SVID is not signed by an authority of the served bundle"
    print(json.dumps({
        "authorities": len(authorities),
        "sequence": doc["spiffe_sequence"],
        "refresh_hint": doc["spiffe_refresh_hint"],
        "endpoint_id": str(spiffe_id),
    }))


if __name__ == "__main__":
    main()
