"""The hand-written SigV4 signer agrees with botocore's, byte for byte."""

from __future__ import annotations

import datetime as dt

import botocore.auth as botocore_auth  # the s3 extra, installed by `make test`
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from asyncarr.stores._sigv4 import (
    UNSIGNED_PAYLOAD,
    SigningCredentials,
    canonical_path,
    canonical_query,
    sign_get,
    sign_request,
)

MOMENT = dt.datetime(2026, 11, 25, 16, 40, 7, tzinfo=dt.UTC)


def botocore_headers(url: str, creds: SigningCredentials, region: str) -> dict[str, str]:
    return botocore_signed("GET", url, creds, {}, b"", sign_payload=True, region=region)


@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzEBYaDH+session/token=="])
@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("127.0.0.1:9000", "bucket/data.zarr/c/0/1"),
        ("s3.eu-west-1.amazonaws.com", "bucket/a b/ü+x=y&z/c.0.0"),
        ("bucket.s3.amazonaws.com", "tilde~and-dash_dot.%/(paren)*"),
    ],
)
def test_signature_matches_botocore(host: str, key: str, token: str | None) -> None:
    creds = SigningCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    path = canonical_path("/" + key)
    ours = sign_get(host, path, creds, "eu-west-1", now=MOMENT)
    theirs = botocore_headers(f"http://{host}{path}", creds, "eu-west-1")
    assert ours["authorization"] == theirs["authorization"]
    assert ours["x-amz-date"] == theirs["x-amz-date"]
    assert ours["x-amz-content-sha256"] == theirs["x-amz-content-sha256"]
    assert ours.get("x-amz-security-token") == theirs.get("x-amz-security-token")


def test_credentials_never_show_in_repr() -> None:
    creds = SigningCredentials("AKIDEXAMPLE", "secret-value", "token-value")
    assert "secret-value" not in repr(creds) and "token-value" not in repr(creds)


def test_signing_now_uses_the_current_second() -> None:
    """Without ``now`` the date comes from the clock (formatted once per second): the
    same headers as signing at that moment explicitly."""
    creds = SigningCredentials("AKIDEXAMPLE", "secret", None)
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    headers = sign_get("127.0.0.1:9000", "/b/k", creds, "us-east-1")
    after = dt.datetime.now(dt.UTC)
    stamp = dt.datetime.strptime(headers["x-amz-date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    assert before <= stamp <= after
    assert headers == sign_get("127.0.0.1:9000", "/b/k", creds, "us-east-1", now=stamp)


def botocore_signed(
    method: str,
    url: str,
    creds: SigningCredentials,
    headers: dict[str, str],
    body: bytes,
    *,
    sign_payload: bool,
    region: str = "us-west-2",
) -> dict[str, str]:
    """botocore's headers for any request, its payload signed (SHA-256) or not."""
    import types

    request = AWSRequest(method=method, url=url, data=body, headers=headers)
    request.context["client_config"] = types.SimpleNamespace(
        s3={"payload_signing_enabled": sign_payload}
    )
    signer = botocore_auth.S3SigV4Auth(
        Credentials(creds.access_key, creds.secret_key, creds.token), "s3", region
    )
    original = botocore_auth.get_current_datetime
    botocore_auth.get_current_datetime = lambda remove_tzinfo=True: MOMENT.replace(tzinfo=None)
    try:
        signer.add_auth(request)
    finally:
        botocore_auth.get_current_datetime = original
    return {k.lower(): v for k, v in request.headers.items()}


@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzEBYaDH+session/token=="])
@pytest.mark.parametrize(
    ("method", "query", "extra", "body"),
    [
        ("PUT", {}, {"x-amz-checksum-crc32c": "yZRlqg==", "if-none-match": "*"}, b"v" * 100),
        ("PUT", {"partNumber": "7", "uploadId": "a b/c+=~"}, {}, b"part"),
        ("POST", {"uploads": ""}, {"x-amz-checksum-algorithm": "CRC32C"}, b""),
        ("POST", {"uploadId": "xyz"}, {}, b"<CompleteMultipartUpload/>"),
        ("DELETE", {}, {"if-match": '"0123abc"'}, b""),
    ],
    ids=["put", "upload-part", "create-upload", "complete", "delete"],
)
@pytest.mark.parametrize("sign_payload", [False, True], ids=["unsigned", "sha256"])
def test_requests_with_queries_and_payloads_match_botocore(
    method: str,
    query: dict[str, str],
    extra: dict[str, str],
    body: bytes,
    sign_payload: bool,
    token: str | None,
) -> None:
    """Writes are signed like botocore signs them: the query in canonical form, the
    payload unsigned (object bodies) or hashed (the multipart completion's XML)."""
    import hashlib

    creds = SigningCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    host, path = "s3.us-west-2.amazonaws.com", canonical_path("/bucket/a b/ü+x=y&z/c.0.0")
    payload = hashlib.sha256(body).hexdigest() if sign_payload else UNSIGNED_PAYLOAD
    ours = sign_request(
        method,
        host,
        path,
        creds,
        "us-west-2",
        query=canonical_query(query),
        payload_hash=payload,
        signed=extra,
        now=MOMENT,
    )
    target = path + (f"?{canonical_query(query)}" if query else "")
    theirs = botocore_signed(
        method, f"http://{host}{target}", creds, extra, body, sign_payload=sign_payload
    )
    assert ours["x-amz-content-sha256"] == theirs["x-amz-content-sha256"] == payload
    assert ours["authorization"] == theirs["authorization"]


def test_canonical_query_sorts_and_encodes() -> None:
    assert canonical_query({"uploads": ""}) == "uploads="
    assert canonical_query({"uploadId": "a b/c+", "partNumber": "2"}) == (
        "partNumber=2&uploadId=a%20b%2Fc%2B"
    )
