"""Source validation: what may fan out, and what the user is told when it may not."""

from __future__ import annotations

import base64
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


HINT = (
    "recreate it from a plain config file: `DOCKER_CONFIG=$(mktemp -d) docker login REGISTRY`, then "
    "`kubectl create secret docker-registry` from that file, or `syncjob create-source`"
)
EXACT = [
    ({"auths": {}, "credsStore": "desktop"}, "holds only 'credsStore'/'credHelpers' and no credentials (Docker Desktop "
     "keeps them in the OS keychain, which Kubernetes cannot read); " + HINT),
    ({"auths": {}}, "has an empty 'auths'; " + HINT),
    ({"auths": ["x"]}, "'auths' is not a JSON object"),
    (["x"], "'.dockerconfigjson' is not a JSON object"),
    ({"auths": {"r.io": "x"}}, "entry for registry 'r.io' is not a JSON object"),
    ({"auths": {"r.io": {"auth": 5}}},
     "'auth' for registry 'r.io' is not valid base64; it must encode 'user:password'"),
    ({"auths": {"r.io": {"auth": b64("u:")}}}, "'auth' for registry 'r.io' does not decode to 'user:password'"),
    ({"auths": {"r.io": {"auth": b64(":p")}}}, "'auth' for registry 'r.io' does not decode to 'user:password'"),
    ({"auths": {"r.io": {"auth": "dXNlcjpwYXNz\n"}}},  # base64 with a stray newline: strict decoding refuses it
     "'auth' for registry 'r.io' is not valid base64; it must encode 'user:password'"),
    ({"auths": {"r.io": {"username": "u"}}}, "registry 'r.io' has no credentials: it needs 'auth' (base64 of "
     "user:password), 'username' and 'password', or 'identitytoken'"),
    ({"auths": {"r.io": {"password": "p"}}}, "registry 'r.io' has no credentials: it needs 'auth' (base64 of "
     "user:password), 'username' and 'password', or 'identitytoken'"),
]  # fmt: skip


@pytest.mark.parametrize(("config", "message"), EXACT, ids=[str(i) for i in range(len(EXACT))])
def test_what_a_refused_config_is_told_word_for_word(config: object, message: str) -> None:
    assert config_source(config) == [message]


@pytest.mark.parametrize(
    "entry",
    [{"registrytoken": "t"}, {"auth": b64("u:p:with:colons")}, {"auth": b64("ü:pässword")}, {"auth": b64("a::")}],
)
def test_more_accepted_credentials(entry: dict[str, str]) -> None:
    assert config_source({"auths": {"r.io": entry}}) == []


def test_legacy_and_base64_messages_word_for_word() -> None:
    legacy = 'holds no registries (legacy shape: {"REGISTRY": {"auth": ...}})'
    for body in ("{}", "[]"):
        assert validate_source(source(type=DOCKERCFG, data={".dockercfg": b64(body)})) == [f"'.dockercfg' {legacy}"]
    wrapped = b64(json.dumps({"auths": {"r.io": {"auth": b64("u:p")}}}))
    assert validate_source(source(type=DOCKERCFG, data={".dockercfg": wrapped})) == [
        "'.dockercfg' uses the new 'auths' shape; store it as type kubernetes.io/dockerconfigjson"
    ]
    assert validate_source(source(data={".dockerconfigjson": "%%%"})) == ["'.dockerconfigjson' is not valid base64"]


def test_the_size_limit_is_the_decoded_size() -> None:
    limit = 1024 * 1024
    at_limit = source(type="Opaque", data={"blob": b64("x" * limit)})
    assert validate_source(at_limit) == []  # exactly 1 MiB decoded: allowed
    over = source(type="Opaque", data={"blob": b64("x" * (limit + 3))})
    assert validate_source(over) == [
        f"its data is about {limit + 3} bytes, over the 1 MiB Secret limit; split it into several Secrets"
    ]


def test_an_auth_that_is_not_utf8_is_judged_not_crashed_on() -> None:
    raw = base64.b64encode(b"\xffuser:pa\xfess").decode()
    assert config_source({"auths": {"r.io": {"auth": raw}}}) == []
