"""Actions → writes, with preconditions and bounded concurrency.

Updates carry the listed resourceVersion and deletes a uid + resourceVersion precondition, so a
write never lands on an object that changed since it was read. On a 409 the one object is read
again and planned again, once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import replace
from typing import Any

from syncjob.errors import ApiError, ClusterUnreachable, DeadlineExceeded
from syncjob.kube.client import Kube
from syncjob.kube.read import POLICIES_PATH, read_one, read_service_account
from syncjob.model import SECRET, SERVICE_ACCOUNT, Action, Kind, Outcome, Result
from syncjob.plan import Planner, copy_body
from syncjob.serviceaccounts import annotation_key


class Applier:
    def __init__(self, kube: Kube, planner: Planner, *, dry_run: str = "", concurrency: int = 8) -> None:
        self.kube = kube
        self.planner = planner
        self.policy = planner.policy
        self.dry_run = dry_run
        self.concurrency = concurrency
        self.secret_actions: tuple[Action, ...] = ()
        # Set when a write found the API server gone: the writes not yet started are not attempted, so a
        # dead server costs one round of retries, not one per remaining write.
        self.server_gone = threading.Event()

    def apply(self, actions: tuple[Action, ...], on_result: Callable[[Result], None] | None = None) -> list[Result]:
        self.secret_actions = tuple(a for a in actions if a.resource == SECRET)
        # Copies first, then the ServiceAccounts that reference them.
        phases = [
            [a for a in actions if a.kind.writes and a.resource == SECRET],
            [a for a in actions if a.kind.writes and a.resource == SERVICE_ACCOUNT],
        ]
        done: dict[Action, Result] = {}
        for writes in phases:
            if self.dry_run == "client":
                done.update({a: Result(a, Outcome.PLANNED) for a in writes})
                continue
            with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="apply") as pool:
                futures = {pool.submit(self._run, a): a for a in writes}
                # Results are logged here, as they complete: the writers never queue on the log handler.
                for future in as_completed(futures):
                    result = future.result()
                    if on_result is not None:
                        on_result(result)
                    done[futures[future]] = result
        return [done.get(a) or Result(a, Outcome.REPORTED) for a in actions]

    def _run(self, action: Action) -> Result:
        if self.kube.deadline.expired():
            return Result(action, Outcome.NOT_RUN, "--timeout expired before this write")
        if self.server_gone.is_set():
            return Result(action, Outcome.NOT_RUN, "not attempted: the API server stopped answering")
        try:
            return self._write(action, replan=True)
        except DeadlineExceeded as e:  # "before" or "during": a write cut off mid-flight may have landed
            return Result(action, Outcome.NOT_RUN, str(e))
        except ApiError as e:
            if e.status == 403 and e.reason == "NamespaceTerminating":  # it began terminating after the read
                return Result(replace(action, kind=Kind.SKIP, reason="namespace is terminating"), Outcome.REPORTED)
            return Result(action, Outcome.FAILED, str(e))
        except ClusterUnreachable as e:
            self.server_gone.set()
            return Result(action, Outcome.FAILED, str(e))

    @property
    def _query(self) -> list[tuple[str, str]]:
        return [("dryRun", "All")] if self.dry_run == "server" else []

    @property
    def _ok(self) -> Outcome:
        return Outcome.DRY_RUN if self.dry_run == "server" else Outcome.DONE

    def _write(self, action: Action, *, replan: bool) -> Result:
        if action.resource == SERVICE_ACCOUNT:
            return self._write_account(action, replan=replan)
        try:
            if action.kind is Kind.CREATE:
                self._create(action)
            elif action.kind is Kind.UPDATE:
                self._update(action)
            elif action.kind is Kind.DELETE:
                self._delete(action)
            elif action.kind is Kind.RECREATE:
                self._delete(action)
                if self.dry_run != "server":  # the dry-run delete left the old copy in place
                    self._create(action)
            else:
                return Result(action, Outcome.REPORTED)
        except ApiError as e:
            if e.status == 404 and action.kind is Kind.DELETE:
                return Result(action, self._ok)  # already gone: what we wanted
            if e.status in (404, 409) and replan:
                copy, occupant = read_one(self.kube, self.policy.instance, action.ref)
                return self._write_again(action, self.planner.replan(action.ref, copy, occupant))
            raise
        return Result(action, self._ok)

    def _write_again(self, action: Action, fresh: Action | None) -> Result:
        """After a 404/409 and a fresh read: write what the new plan says, once."""
        if fresh is None:
            return Result(replace(action, kind=Kind.LEAVE, reason="nothing to do after a re-read"), Outcome.REPORTED)
        fresh = replace(fresh, reason=f"{fresh.reason} (re-planned after a conflicting change)")
        return self._write(fresh, replan=False)

    def _source_body(self, action: Action, resource_version: str = "") -> dict[str, Any]:
        assert action.source is not None
        source = self.planner.verdicts.eligible[action.source]
        return copy_body(source, self.policy, action.namespace, resource_version, self.planner.snapshot.proof_key)

    def _create(self, action: Action) -> None:
        self.kube.call(
            "create",
            "POST",
            f"/api/v1/namespaces/{action.namespace}/secrets",
            what=f"create Secret {action.ref}",
            query=self._query,
            body=self._source_body(action),
        )

    def _update(self, action: Action) -> None:
        self.kube.call(
            "update",
            "PUT",
            f"/api/v1/namespaces/{action.namespace}/secrets/{action.name}",
            what=f"update Secret {action.ref}",
            query=self._query,
            body=self._source_body(action, action.expected_resource_version),
        )

    def _delete(self, action: Action) -> None:
        self.kube.call(
            "delete",
            "DELETE",
            f"/api/v1/namespaces/{action.namespace}/secrets/{action.name}",
            what=f"delete Secret {action.ref}",
            query=self._query,
            body=self._delete_options(action),
        )

    def _delete_options(self, action: Action) -> dict[str, Any]:
        options: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "preconditions": {"uid": action.expected_uid, "resourceVersion": action.expected_resource_version},
        }
        if self.dry_run == "server":
            # With a DeleteOptions body the server reads dryRun from the body, not the query.
            options["dryRun"] = ["All"]
        return options

    # ServiceAccounts

    def _write_account(self, action: Action, *, replan: bool) -> Result:
        path = f"/api/v1/namespaces/{action.namespace}/serviceaccounts"
        refs = [{"name": name} for name in action.pull_secrets]
        recorded = ",".join(action.added) or None  # None removes the annotation
        try:
            if action.kind is Kind.CREATE:
                body = {
                    "apiVersion": "v1",
                    "kind": "ServiceAccount",
                    "metadata": {
                        "name": action.name,
                        "annotations": {annotation_key(self.policy.instance): recorded},
                    },
                    "imagePullSecrets": refs,
                }
                self.kube.call(
                    "create", "POST", path, what=f"create ServiceAccount {action.ref}", query=self._query, body=body
                )
            else:
                # A merge patch carrying resourceVersion: it fails (409) rather than clobbering a
                # list someone changed since we read it.
                patch = {
                    "metadata": {
                        "resourceVersion": action.expected_resource_version,
                        "annotations": {annotation_key(self.policy.instance): recorded},
                    },
                    "imagePullSecrets": refs,
                }
                self.kube.call(
                    "patch",
                    "PATCH",
                    f"{path}/{action.name}",
                    what=f"patch ServiceAccount {action.ref}",
                    query=self._query,
                    body=patch,
                    content_type="application/merge-patch+json",
                )
        except ApiError as e:
            if e.status in (404, 409) and replan:
                fresh_account = read_service_account(self.kube, action.ref)
                if fresh_account is None:
                    return Result(
                        replace(action, kind=Kind.SKIP, reason="ServiceAccount deleted meanwhile"), Outcome.REPORTED
                    )
                return self._write_again(action, self.planner.replan_account(fresh_account, self.secret_actions))
            raise
        return Result(action, self._ok)


def write_policy_status(kube: Kube, name: str, status: dict[str, Any]) -> None:
    """The status subresource of one SecretSync, replaced whole (a JSON patch `add` of /status: a merge
    patch would keep keys of the last run's maps that this run no longer has). Its own RBAC verb."""
    kube.call(
        "status",
        "PATCH",
        f"{POLICIES_PATH}/{name}/status",
        what=f"update the status of SecretSync {name}",
        body=[{"op": "add", "path": "/status", "value": status}],
        content_type="application/json-patch+json",
    )
