"""`syncjob create-source`: Docker config → labelled source Secret, validated as `syncjob run` validates.

Unit tests use config files in tmp_path; the cluster tests --apply on the real API server and let
`syncjob run` fan the result out.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import secrets
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from syncjob import create_source
from syncjob.model import Source, frozen_map
from syncjob.validate import validate_source
from tests.factories import b64, seed
from tests.leakscan import ALL_OUTPUTS
from tests.sync_env import SyncEnv

SYNC_LABEL = "com.vmware.tanzu.buildservice.sync"
READ_ONLY = "read-only (pull-only)"


def invoke(*argv: str, stdin: str = "") -> tuple[int, str, str]:
    """create-source as the CLI runs it: parsed by a parser it registered itself on."""
    parser = argparse.ArgumentParser(prog="syncjob")
    create_source.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["create-source", *argv])
    out, err = io.StringIO(), io.StringIO()
    code = create_source.run(args, io.StringIO(stdin), out, err)
    return code, out.getvalue(), err.getvalue()


def write_config(tmp_path: Path, config: Any, name: str = "config.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(config))
    return path


def stored_config(manifest: dict[str, Any]) -> Any:
    return json.loads(base64.b64decode(manifest["data"][".dockerconfigjson"]))


def secret_forms(*values: str) -> list[str]:
    return [form for v in values for form in (v, b64(v))]


def unique(label: str) -> str:
    value = f"{label}-{secrets.token_hex(10)}"
    seed(value)
    return value


# --- output -------------------------------------------------------------------------------------


def test_prints_a_labelled_dockerconfigjson_secret(tmp_path: Path) -> None:
    auth = b64("robot:pw-one")
    path = write_config(tmp_path, {"auths": {"registry.example.com": {"auth": auth}}})
    code, out, err = invoke("regcred", "--from-docker-config", str(path))
    assert code == 0, err
    manifest = yaml.safe_load(out)
    assert manifest["apiVersion"] == "v1"
    assert manifest["kind"] == "Secret"
    assert manifest["type"] == "kubernetes.io/dockerconfigjson"
    assert manifest["metadata"] == {"name": "regcred", "namespace": "build-service", "labels": {SYNC_LABEL: "true"}}
    assert stored_config(manifest) == {"auths": {"registry.example.com": {"auth": auth}}}
    assert READ_ONLY in err
    assert "pw-one" not in err and auth not in err


def test_output_is_accepted_by_the_engine(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"auths": {"r.example.com": {"username": "u", "password": "p"}}})
    code, out, _ = invoke("regcred", "--from-docker-config", str(path), "--namespace", "creds")
    assert code == 0
    manifest = yaml.safe_load(out)
    source = Source("creds", "regcred", "uid", manifest["type"], frozen_map(manifest["data"]))
    assert validate_source(source) == []
    assert manifest["metadata"]["namespace"] == "creds"


def test_drops_everything_but_the_credentials(tmp_path: Path) -> None:
    config = {
        "auths": {"ghcr.io": {"auth": b64("robot:pw"), "email": "robot@example.com"}},
        "credsStore": "desktop",
        "credHelpers": {"gcr.io": "gcloud"},
        "HttpHeaders": {"User-Agent": "Docker-Client"},
        "psFormat": "table {{.ID}}",
        "currentContext": "desktop-linux",
        "plugins": {"scout": {"hints": "false"}},
    }
    code, out, _ = invoke("regcred", "--from-docker-config", str(write_config(tmp_path, config)))
    assert code == 0
    assert stored_config(yaml.safe_load(out)) == {"auths": {"ghcr.io": {"auth": b64("robot:pw")}}}


def test_username_and_password_also_carry_auth(tmp_path: Path) -> None:
    config = {"auths": {"r.example.com": {"username": "robot", "password": "pw"}}}
    code, out, _ = invoke("regcred", "--from-docker-config", str(write_config(tmp_path, config)))
    assert code == 0
    entry = stored_config(yaml.safe_load(out))["auths"]["r.example.com"]
    assert entry == {"username": "robot", "password": "pw", "auth": b64("robot:pw")}


def test_identity_token_entries_are_kept(tmp_path: Path) -> None:
    entry = {"auth": b64("00000000-0000-0000-0000-000000000000:"), "identitytoken": "refresh-token"}
    config = {"auths": {"myregistry.azurecr.io": entry}}
    code, out, err = invoke("regcred", "--from-docker-config", str(write_config(tmp_path, config)))
    assert code == 0, err
    assert stored_config(yaml.safe_load(out))["auths"]["myregistry.azurecr.io"] == entry


def test_accepts_a_docker_config_directory(tmp_path: Path) -> None:
    write_config(tmp_path, {"auths": {"r.example.com": {"auth": b64("u:p")}}})
    code, out, _ = invoke("regcred", "--from-docker-config", str(tmp_path))
    assert code == 0
    assert list(stored_config(yaml.safe_load(out))["auths"]) == ["r.example.com"]


# --- refused configs ------------------------------------------------------------------------------


def engine_message(config: Any) -> str:
    data = {".dockerconfigjson": b64(json.dumps(config))}
    (message,) = validate_source(Source("build-service", "regcred", "", "kubernetes.io/dockerconfigjson", data))
    return message


@pytest.mark.parametrize(
    "config",
    [
        {"credsStore": "desktop"},
        {"auths": {}, "credsStore": "osxkeychain"},
        # What Docker Desktop really writes: the registries, with empty entries, and the keychain.
        {"auths": {"https://index.docker.io/v1/": {}, "ghcr.io": {}}, "credsStore": "desktop"},
    ],
    ids=["credsStore-only", "credsStore-empty-auths", "docker-desktop"],
)
def test_creds_store_only_config_is_refused_with_the_engine_guidance(tmp_path: Path, config: Any) -> None:
    code, out, err = invoke("regcred", "--from-docker-config", str(write_config(tmp_path, config)))
    assert code == 2
    assert out == ""
    assert engine_message({"credsStore": "desktop"}) in err
    assert "OS keychain" in err
    assert "--docker-password-stdin" in err  # how to do it with this command


def test_cred_helpers_only_config_is_refused(tmp_path: Path) -> None:
    config = {"credHelpers": {"gcr.io": "gcloud", "123.dkr.ecr.us-east-1.amazonaws.com": "ecr-login"}}
    code, out, err = invoke("regcred", "--from-docker-config", str(write_config(tmp_path, config)))
    assert code == 2
    assert out == ""
    assert engine_message(config) in err


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"auths": {}}, "empty 'auths'"),
        ({}, "empty 'auths'"),
        (["not", "an", "object"], "not a JSON object"),
        ({"auths": {"r.io": {"auth": "%%%not-base64"}}}, "'auth' for registry 'r.io' is not valid base64"),
        ({"auths": {"r.io": {"auth": b64("no-colon-secret")}}}, "does not decode to 'user:password'"),
        ({"auths": {"r.io": {"username": "only-user"}}}, "registry 'r.io' has no credentials"),
        ({"auths": {"r.io": "a-string"}}, "is not a JSON object"),
    ],
)
def test_invalid_configs_are_refused_with_the_engine_message(tmp_path: Path, config: Any, expected: str) -> None:
    code, out, err = invoke("regcred", "--from-docker-config", str(write_config(tmp_path, config)))
    assert code == 2
    assert out == ""
    assert expected in err
    assert "would be refused by `syncjob run`" in err
    for leaked in ("%%%not-base64", "no-colon-secret", b64("no-colon-secret")):
        assert leaked not in err


def test_unreadable_or_broken_files_are_refused_without_quoting_them(tmp_path: Path) -> None:
    code, _, err = invoke("regcred", "--from-docker-config", str(tmp_path / "missing.json"))
    assert code == 2
    assert "cannot read it" in err
    broken = tmp_path / "broken.json"
    broken.write_text('{"auths": {"r.io": {"auth": "half-a-secret')
    code, _, err = invoke("regcred", "--from-docker-config", str(broken))
    assert code == 2
    assert "not valid JSON (line 1" in err
    assert "half-a-secret" not in err


# --- --registry ---------------------------------------------------------------------------------------

THREE_REGISTRIES = {
    "auths": {
        "https://index.docker.io/v1/": {"auth": b64("hub:pw")},
        "ghcr.io": {"auth": b64("gh:pw")},
        "registry.example.com": {"auth": b64("ex:pw")},
    }
}


@pytest.mark.parametrize(
    ("flags", "kept"),
    [
        ([], ["https://index.docker.io/v1/", "ghcr.io", "registry.example.com"]),
        (["--registry", "ghcr.io"], ["ghcr.io"]),
        (["--registry", "ghcr.io", "--registry", "registry.example.com"], ["ghcr.io", "registry.example.com"]),
        (["--registry", "registry.example.com,ghcr.io"], ["ghcr.io", "registry.example.com"]),
        (["--registry", "docker.io"], ["https://index.docker.io/v1/"]),
        (["--registry", "https://ghcr.io/"], ["ghcr.io"]),
    ],
)
def test_registry_keeps_only_the_named_registries(tmp_path: Path, flags: list[str], kept: list[str]) -> None:
    code, out, err = invoke("regcred", "--from-docker-config", str(write_config(tmp_path, THREE_REGISTRIES)), *flags)
    assert code == 0, err
    assert list(stored_config(yaml.safe_load(out))["auths"]) == kept


def test_unknown_registry_names_the_available_hosts(tmp_path: Path) -> None:
    path = write_config(tmp_path, THREE_REGISTRIES)
    code, out, err = invoke("regcred", "--from-docker-config", str(path), "--registry", "quay.io")
    assert code == 2
    assert out == ""
    assert "--registry quay.io: not in the Docker config" in err
    assert "ghcr.io, https://index.docker.io/v1/, registry.example.com" in err
    assert b64("gh:pw") not in err and "gh:pw" not in err


def test_registry_leaves_out_a_broken_entry_it_does_not_name(tmp_path: Path) -> None:
    config = {"auths": {"good.example.com": {"auth": b64("u:p")}, "bad.example.com": {"auth": "%%%"}}}
    path = write_config(tmp_path, config)
    assert invoke("regcred", "--from-docker-config", str(path))[0] == 2
    code, out, _ = invoke("regcred", "--from-docker-config", str(path), "--registry", "good.example.com")
    assert code == 0
    assert list(stored_config(yaml.safe_load(out))["auths"]) == ["good.example.com"]


# --- --docker-server with the password on stdin ----------------------------------------------------


def test_password_from_stdin(tmp_path: Path) -> None:
    password = unique("stdin-pw")
    argv = ["regcred", "--docker-server", "ghcr.io", "--docker-username", "robot", "--docker-password-stdin"]
    code, out, err = invoke(*argv, stdin=password + "\n")
    assert code == 0, err
    entry = stored_config(yaml.safe_load(out))["auths"]["ghcr.io"]
    assert entry == {"username": "robot", "password": password, "auth": b64(f"robot:{password}")}
    assert not any(s in err for s in secret_forms(password, f"robot:{password}"))


@pytest.mark.parametrize(
    ("stdin", "expected"), [("", "stdin was empty"), ("\n", "stdin was empty"), ("a\nb\n", "more than one line")]
)
def test_bad_stdin_password_is_refused(stdin: str, expected: str) -> None:
    argv = ["regcred", "--docker-server", "ghcr.io", "--docker-username", "robot", "--docker-password-stdin"]
    code, out, err = invoke(*argv, stdin=stdin)
    assert (code, out) == (2, "")
    assert expected in err


@pytest.mark.parametrize("form", ["separate", "equals"])
def test_password_on_the_command_line_is_refused_and_never_echoed(form: str) -> None:
    password = unique("argv-pw")
    flag = ["--docker-password", password] if form == "separate" else [f"--docker-password={password}"]
    code, out, err = invoke("regcred", "--docker-server", "ghcr.io", "--docker-username", "robot", *flag)
    assert (code, out) == (2, "")
    assert "--docker-password-stdin" in err and "shell history" in err
    assert password not in err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["regcred"], "give --from-docker-config PATH"),
        (["regcred", "--docker-server", "ghcr.io"], "also needs --docker-username, --docker-password-stdin"),
        (["regcred", "--from-docker-config", "x.json", "--docker-server", "ghcr.io"], "cannot be combined"),
        (["Not_A_Name", "--from-docker-config", "x.json"], "not a valid Secret name"),
        (["regcred", "--from-docker-config", "x.json", "--namespace", "No"], "not a valid namespace"),
        (["regcred", "--from-docker-config", "x.json", "--kubeconfig", "k"], "only with --apply"),
        (
            ["regcred", "--docker-server", "a", "--docker-username", "u", "--docker-password-stdin", "--registry", "a"],
            "--registry selects registries of --from-docker-config",
        ),
    ],
)
def test_bad_flags_exit_2(argv: list[str], expected: str) -> None:
    code, out, err = invoke(*argv, stdin="pw")
    assert (code, out) == (2, "")
    assert expected in err
    assert READ_ONLY in err


def test_apply_without_a_kubeconfig_exits_2(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"auths": {"r.example.com": {"auth": b64("u:p")}}})
    code, out, err = invoke("regcred", "--from-docker-config", str(path), "--apply", "--kubeconfig", "/nonexistent")
    assert (code, out) == (2, "")
    assert "kubeconfig /nonexistent does not exist" in err


def test_help_says_the_manifest_holds_the_credential(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        invoke("--help")
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    assert "CONTAINS THE CREDENTIAL" in help_text
    assert "--docker-password-stdin" in help_text
    assert "--docker-password " not in help_text  # the refused flag is not advertised


# --- on the real API server -------------------------------------------------------------------------


def record(*texts: str) -> None:
    ALL_OUTPUTS.extend(texts)  # scanned for every seeded credential at the end of the session


def decoded(secret: k8s.V1Secret) -> Any:
    return json.loads(base64.b64decode(secret.data[".dockerconfigjson"]))


def test_apply_creates_then_updates_and_syncjob_run_fans_it_out(env: SyncEnv, tmp_path: Path) -> None:
    target = env.build_namespace("a")
    first = unique("first-pw")
    config = {"auths": {"registry.example.com": {"username": "robot", "password": first}}, "credsStore": "desktop"}
    kube = ["--namespace", env.source_ns, "--apply", "--kubeconfig", str(env.cluster.kubeconfig)]

    code, out, err = invoke("regcred", "--from-docker-config", str(write_config(tmp_path, config)), *kube)
    record(out, err)
    assert code == 0, err
    assert out.splitlines() == [
        f"secret/regcred created in namespace {env.source_ns} (type kubernetes.io/dockerconfigjson, "
        "label com.vmware.tanzu.buildservice.sync=true, registries: registry.example.com)"
    ]
    assert READ_ONLY in err
    assert not any(s in out + err for s in secret_forms(first, f"robot:{first}"))
    source = env.secret(env.source_ns)
    assert source is not None
    assert source.type == "kubernetes.io/dockerconfigjson"
    assert source.metadata.labels == {SYNC_LABEL: "true"}
    assert decoded(source) == {
        "auths": {"registry.example.com": {"username": "robot", "password": first, "auth": b64(f"robot:{first}")}}
    }

    run = env.run()
    assert run.code == 0, run.stderr
    assert run.summary["actions"]["create"] == {"done": 1}
    copy = env.secret(target)
    assert copy is not None and copy.data == source.data

    # Someone labelled it and kubectl-applied it meanwhile: their label stays, the stale
    # last-applied-configuration (which holds the old credential) goes.
    source.metadata.labels["team"] = "platform"
    source.metadata.annotations = {"kubectl.kubernetes.io/last-applied-configuration": "{}", "note": "keep"}
    env.core.replace_namespaced_secret("regcred", env.source_ns, source)

    second = unique("second-pw")
    argv = ["regcred", "--docker-server", "registry.example.com", "--docker-username", "robot"]
    code, out, err = invoke(*argv, "--docker-password-stdin", *kube, stdin=second + "\n")
    record(out, err)
    assert code == 0, err
    assert out.startswith(f"secret/regcred updated in namespace {env.source_ns} ")
    assert not any(s in out + err for s in secret_forms(second, f"robot:{second}"))
    updated = env.secret(env.source_ns)
    assert updated is not None
    assert updated.metadata.uid == source.metadata.uid
    assert updated.metadata.resource_version != source.metadata.resource_version
    assert updated.metadata.labels == {SYNC_LABEL: "true", "team": "platform"}
    assert updated.metadata.annotations == {"note": "keep"}
    assert decoded(updated)["auths"]["registry.example.com"]["auth"] == b64(f"robot:{second}")

    run = env.run()
    assert run.code == 0, run.stderr
    assert run.summary["actions"]["update"] == {"done": 1}
    copy = env.secret(target)
    assert copy is not None and copy.data == updated.data

    # The same input again: nothing to write.
    code, out, err = invoke(*argv, "--docker-password-stdin", *kube, stdin=second)
    record(out, err)
    assert code == 0, err
    assert out.startswith("secret/regcred unchanged ")
    again = env.secret(env.source_ns)
    assert again is not None and again.metadata.resource_version == updated.metadata.resource_version


def test_apply_adds_the_sync_label_to_an_unlabelled_secret(env: SyncEnv, tmp_path: Path) -> None:
    target = env.build_namespace("a")
    env.put_source(labels={"owner": "me"})
    assert env.run().code == 0
    assert env.secret(target) is None  # not labelled: not a source yet
    path = write_config(tmp_path, {"auths": {"r.example.com": {"auth": b64("robot:label-me")}}})
    kube = ["--namespace", env.source_ns, "--apply", "--kubeconfig", str(env.cluster.kubeconfig)]
    code, out, err = invoke("regcred", "--from-docker-config", str(path), *kube)
    record(out, err)
    assert code == 0, err
    source = env.secret(env.source_ns)
    assert source is not None and source.metadata.labels == {"owner": "me", SYNC_LABEL: "true"}
    assert env.run().code == 0
    assert env.secret(target) is not None


def test_apply_refuses_secrets_it_must_not_overwrite(cluster: Any, tmp_path: Path) -> None:
    ns = cluster.new_namespace("cs")
    path = write_config(tmp_path, {"auths": {"r.example.com": {"auth": b64("robot:pw")}}})
    kube = ["--namespace", ns, "--apply", "--kubeconfig", str(cluster.kubeconfig)]
    with cluster.admin_client() as api:
        core = k8s.CoreV1Api(api)
        opaque = k8s.V1Secret(metadata=k8s.V1ObjectMeta(name="opaque"), type="Opaque", data={"k": b64("v")})
        core.create_namespaced_secret(ns, opaque)
        copy_meta = k8s.V1ObjectMeta(name="copy", labels={"app.kubernetes.io/managed-by": "syncjob"})
        data = {".dockerconfigjson": b64(json.dumps({"auths": {"x.io": {"auth": b64("a:b")}}}))}
        core.create_namespaced_secret(
            ns, k8s.V1Secret(metadata=copy_meta, type="kubernetes.io/dockerconfigjson", data=data)
        )
        before = {s.metadata.name: s.metadata.resource_version for s in core.list_namespaced_secret(ns).items}

        code, out, err = invoke("opaque", "--from-docker-config", str(path), *kube)
        assert (code, out) == (2, "")
        assert f"Secret {ns}/opaque exists with type Opaque; a Secret's type cannot change" in err

        code, out, err = invoke("copy", "--from-docker-config", str(path), *kube)
        assert (code, out) == (2, "")
        assert "is a copy that syncjob manages" in err

        after = {s.metadata.name: s.metadata.resource_version for s in core.list_namespaced_secret(ns).items}
        assert after == before


def test_apply_into_a_missing_namespace_exits_2(cluster: Any, tmp_path: Path) -> None:
    path = write_config(tmp_path, {"auths": {"r.example.com": {"auth": b64("robot:pw")}}})
    kube = ["--namespace", "no-such-namespace", "--apply", "--kubeconfig", str(cluster.kubeconfig)]
    code, out, err = invoke("regcred", "--from-docker-config", str(path), *kube)
    assert (code, out) == (2, "")
    assert "namespace no-such-namespace does not exist" in err
