"""Secrets never leak. Seeds unique credentials through every output path — success, update,
dry-runs, table and JSON, invalid sources, API errors, dump files — and scans everything syncjob
printed in this session (this file runs last: zz) for them, raw and base64. Expected hits: 0."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import yaml
from kubernetes.client.exceptions import ApiException

from syncjob.kube.client import summarise
from tests.factories import SEEDED_SECRETS, b64, docker_config, seed
from tests.sync_env import ALL_OUTPUTS, SyncEnv


def unique(label: str) -> str:
    return f"{label}-{secrets.token_hex(12)}"


def hits(texts: list[str]) -> list[str]:
    needles = {s for s in SEEDED_SECRETS if len(s) >= 8}  # shorter ones would match by chance
    return sorted({n for n in needles for t in texts if n in t})


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

    assert a and b
    assert hits([f"prefix {echoed} suffix"]) == [echoed], "the scan itself must be able to find a leak"
    found = hits(ALL_OUTPUTS)
    scanned = sum(len(t) for t in ALL_OUTPUTS)
    print(f"leak scan: {len(SEEDED_SECRETS)} seeded values, {scanned} bytes of output scanned, {len(found)} hits")
    assert found == []
