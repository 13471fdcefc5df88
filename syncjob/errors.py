"""The project's own error types. The CLI maps each to a message and an exit code."""

from __future__ import annotations

EXIT_OK = 0
EXIT_PARTIAL = 1  # some objects failed, a source was invalid, or the run was cut short
EXIT_UNUSABLE = 2  # bad configuration, cluster unreachable, or forbidden to list


class SyncjobError(Exception):
    """Base of every error syncjob raises on purpose. Messages never contain secret values."""

    exit_code = EXIT_UNUSABLE


class ConfigError(SyncjobError):
    """A flag, environment variable or kubeconfig is wrong; the message says which and how to fix it."""


class ClusterUnreachable(SyncjobError):
    """The API server could not be reached at all."""


class ForbiddenToList(SyncjobError):
    """RBAC denies a LIST the run cannot do without."""


class ApiError(SyncjobError):
    """The API server refused one request. Carries a summary, never the response body."""

    exit_code = EXIT_PARTIAL

    def __init__(self, status: int, reason: str, message: str, what: str) -> None:
        self.status = status
        self.reason = reason
        self.message = message
        self.what = what
        super().__init__(f"{what}: HTTP {status} {reason}: {message}")


class TransientError(ApiError):
    """A failure worth retrying (429, 5xx, connection trouble) that outlived its retries."""


class DeadlineExceeded(SyncjobError):
    """The run's --timeout expired."""

    exit_code = EXIT_PARTIAL


class ReadIncomplete(SyncjobError):
    """The cluster could not be read completely (e.g. --timeout expired while reading): nothing was written."""


class ConversionFailed(SyncjobError):
    """A CRD's conversion webhook failed, so the API server cannot serve a build kind's objects (an
    operator being upgraded, its webhook down). Nothing was written; the next run tries again."""
