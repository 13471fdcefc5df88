"""Source events → POSTs of core/v1 Events. A failure here is a warning, never a failed run."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from syncjob.errors import ApiError, ClusterUnreachable, DeadlineExceeded
from syncjob.events import SourceEvent
from syncjob.kube.client import Kube
from syncjob.logs import log_event


def post_events(kube: Kube, events: Sequence[SourceEvent], instance: str) -> int:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    posted = 0
    for event in events:
        ns, name = event.source.namespace, event.source.name
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{name}.", "namespace": ns},
            "involvedObject": {"apiVersion": "v1", "kind": "Secret", "namespace": ns, "name": name, "uid": event.uid},
            "type": event.type,
            "reason": event.reason,
            "message": event.message[:1024],
            "source": {"component": "syncjob"},
            "reportingComponent": "syncjob.dev/syncjob",
            "reportingInstance": instance,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            kube.call(
                "create",
                "POST",
                f"/api/v1/namespaces/{ns}/events",
                what=f"create Event for Secret {ns}/{name}",
                body=body,
            )
            posted += 1
        except (ApiError, ClusterUnreachable, DeadlineExceeded) as e:
            hint = (
                " (grant events create: the optional role in k8s/cronjob.yaml)"
                if getattr(e, "status", 0) == 403
                else ""
            )
            log_event("event_failed", logging.WARNING, source=f"{ns}/{name}", message=f"{e}{hint}")
    return posted
