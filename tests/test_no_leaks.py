"""Secrets never leak. Seeds unique credentials through every output path — success, update,
dry-runs, table and JSON, invalid sources, API errors, dump files. The scan itself runs at the end of
the session over everything any test made syncjob print or log (tests/leakscan.py, conftest.py)."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import yaml
from kubernetes.client.exceptions import ApiException

from syncjob.kube.client import summarise
from tests.factories import SEEDED_SECRETS, b64, docker_config, seed
from tests.leakscan import ALL_OUTPUTS, hits
from tests.sync_env import SyncEnv


def unique(label: str) -> str:
    return f"{label}-{secrets.token_hex(12)}"


def test_credentials_never_appear_in_any_output(env: SyncEnv, tmp_path: Path) -> None:
    a, b = env.build_namespace("a"), env.build_namespace("b")
    env.put_source(data=docker_config(user="leaky", password=unique("pw")))
    assert env.run().code == 0
    env.put_source(data=docker_config(user="leaky", password=unique("pw2")))
    for flags in (["--dry-run"], ["--dry-run=server"], ["-o", "table", "--dry-run"], []):
        env.run(*flags)
    assert env.run_process("-o", "table").code == 0

    # Invalid sources whose broken parts are the secret itself.
    raw = unique("raw")
    no_colon = unique("nocolon")
    seed(raw, no_colon)
    env.put_source("bad-b64", data={".dockerconfigjson": b64(json.dumps({"auths": {"r.io": {"auth": raw + "!"}}}))})
    env.put_source(
        "bad-pair", data={".dockerconfigjson": b64(json.dumps({"auths": {"r.io": {"auth": b64(no_colon)}}}))}
    )
    assert env.run().code == 1
    assert env.run_process().code == 1

    # A dump file: malformed JSON inside a source, and a file that is not YAML at all.
    inner = unique("dump")
    seed(inner)
    bad_json = b64('{"auths": {"r.io": {"auth": "' + inner)
    source = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "s",
            "namespace": "build-service",
            "labels": {"com.vmware.tanzu.buildservice.sync": "true"},
        },
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": bad_json},
    }
    dump = tmp_path / "dump.yaml"
    dump.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [source]}))
    garbled = tmp_path / "garbled.yaml"
    garbled.write_text(f"items: [{{{inner}: : :\n")
    for path in (dump, garbled):
        env.run_process(argv=["run", "--snapshot", str(path), "-o", "json"])

    # An API error that echoes a value is summarised with the value redacted.
    echoed = unique("echo")
    seed(echoed)
    body = json.dumps({"kind": "Status", "reason": "Invalid", "message": f'data: Invalid value: "{echoed}": bad'})
    error = ApiException(status=422, reason="Unprocessable Entity")
    error.body = body
    ALL_OUTPUTS.append(str(summarise(error, "create Secret x/y", touches_secrets=True)))

    assert env.copies().keys() == {f"{a}/regcred", f"{b}/regcred"}
    assert len(SEEDED_SECRETS) > 10


def test_the_scan_finds_a_leak_of_any_length() -> None:
    assert hits(["prefix pw7 suffix"], ["pw7"]) == ["pw7"]
    assert hits(["a", "b"], ["ab"]) == []  # never across two outputs
    assert hits(["nothing here"], ["pw7"]) == []
