"""Source validation: what may fan out, and what the user is told when it may not."""

from __future__ import annotations

import json

import pytest

from syncjob.model import DOCKERCFG
from syncjob.validate import validate_source
from tests.factories import b64, source


def config_source(config: object) -> list[str]:
    return validate_source(source(data={".dockerconfigjson": b64(json.dumps(config))}))


@pytest.mark.parametrize(
    "entry",
    [
        {"auth": b64("user:pass")},
        {"username": "user", "password": "pass"},
        {"identitytoken": "tok"},
    ],
)
def test_accepted_credentials(entry: dict[str, str]) -> None:
    assert config_source({"auths": {"r.example.com": entry}}) == []


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"auths": {}, "credsStore": "desktop"}, "credsStore"),
        ({"credHelpers": {"gcr.io": "gcloud"}}, "credsStore"),
        ({"auths": {}}, "empty 'auths'"),
        ({"auths": {"r.io": {"auth": "%%%not-base64"}}}, "not valid base64"),
        ({"auths": {"r.io": {"auth": b64("no-colon")}}}, "user:password"),
        ({"auths": {"r.io": {}}}, "no credentials"),
        (["not", "an", "object"], "not a JSON object"),
    ],
)
def test_refused_configs_name_the_problem(config: object, expected: str) -> None:
    (message,) = config_source(config)
    assert expected in message


def test_malformed_json_and_missing_key() -> None:
    assert "not valid JSON" in validate_source(source(data={".dockerconfigjson": b64("{nope")}))[0]
    assert "no '.dockerconfigjson' key" in validate_source(source(data={"other": b64("x")}))[0]


def test_legacy_dockercfg_shape() -> None:
    good = {"r.io": {"auth": b64("u:p"), "email": "x@example.com"}}
    assert validate_source(source(type=DOCKERCFG, data={".dockercfg": b64(json.dumps(good))})) == []
    wrapped = {"auths": good}
    (msg,) = validate_source(source(type=DOCKERCFG, data={".dockercfg": b64(json.dumps(wrapped))}))
    assert "dockerconfigjson" in msg


def test_oversized_source_is_refused() -> None:
    big = source(type="Opaque", data={"blob": b64("x" * (1024 * 1024 + 10))})
    (msg,) = validate_source(big)
    assert "1 MiB" in msg


def test_messages_never_quote_the_secret() -> None:
    secret = "hunter2-very-secret"
    for config in ({"auths": {"r.io": {"auth": b64(secret)}}}, {"auths": {"r.io": {"auth": secret}}}):
        for message in config_source(config):
            assert secret not in message and b64(secret) not in message
