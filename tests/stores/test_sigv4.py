"""The hand-written SigV4 GET signer agrees with botocore's, byte for byte."""

from __future__ import annotations

import datetime as dt

import botocore.auth as botocore_auth  # the s3 extra, installed by `make test`
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from asyncarr.stores._sigv4 import SigningCredentials, canonical_path, sign_get

MOMENT = dt.datetime(2026, 11, 25, 16, 40, 7, tzinfo=dt.UTC)


def botocore_headers(url: str, creds: SigningCredentials, region: str) -> dict[str, str]:
    request = AWSRequest(method="GET", url=url, data=b"")
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
