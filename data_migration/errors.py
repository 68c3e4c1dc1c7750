"""Which failures are worth another attempt, and the error every failed export raises.

Transient: the network dropped, a service answered 5xx, throttled, or timed out. Another attempt a
little later can succeed, so Dagster's RetryPolicy (exponential backoff with jitter) applies.
Permanent: a wrong password, access denied, a missing bucket or table, an SQL error, or one of our
own integrity errors. Another attempt would fail the same way, so the export fails at once.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import snowflake.connector.errors as sf
from botocore.exceptions import ClientError, HTTPClientError, IncompleteReadError, ResponseStreamingError
from botocore.exceptions import ConnectionError as BotoConnectionError
from dagster import Failure
from requests import exceptions as requests_errors
from snowflake.connector.secret_detector import SecretDetector
from snowflake.connector.vendored.requests import exceptions as vendored_requests
from snowflake.connector.vendored.urllib3 import exceptions as vendored_urllib3
from urllib3 import exceptions as urllib3_errors

_SNOWFLAKE_TRANSIENT = (
    sf.InternalServerError,
    sf.ServiceUnavailableError,
    sf.GatewayTimeoutError,
    sf.RequestTimeoutError,
    sf.BadGatewayError,
    sf.TooManyRequests,
    sf.OtherHTTPRetryableError,
    sf.RequestExceedMaxRetryError,
)
_HTTP_TRANSIENT = tuple(
    error
    # The connector vendors its own copies of requests and urllib3.
    for requests_module, urllib3_module in ((requests_errors, urllib3_errors), (vendored_requests, vendored_urllib3))
    for error in (
        requests_module.ConnectionError,
        requests_module.ChunkedEncodingError,
        requests_module.Timeout,
        urllib3_module.ProtocolError,
        urllib3_module.TimeoutError,
    )
)
_SNOWFLAKE_PERMANENT = (sf.NonRetryableTlsError, sf.RevocationCheckError)
_S3_TRANSIENT_CODES = {
    "SlowDown",
    "InternalError",
    "ServiceUnavailable",
    "RequestTimeout",
    "RequestTimeoutException",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "OperationAborted",
    "ConditionalRequestConflict",
    "500",
    "502",
    "503",
    "504",
}


class ExportFailed(Failure):
    """An export failed. The message names the export, where it was going, and the cause.

    `allow_retries` is False for permanent errors, so that Dagster's RetryPolicy is skipped.
    Its text, and that of the error being handled when it is made (`raise ExportFailed(…) from
    error`, whose chain Dagster records with the failure), pass through the connector's
    SecretDetector first: a failed result-chunk download names a presigned URL, for one.
    """

    def __init__(self, message: str, *, transient: bool):
        note = (
            "transient: will be retried if attempts remain"
            if transient
            else "not retried: another attempt would fail the same way"
        )
        mask_chain(sys.exc_info()[1])
        super().__init__(description=masked(f"{message} [{note}]"), allow_retries=transient)
        self.transient = transient


def masked(text: str) -> str:
    """`text` with what the Snowflake connector's SecretDetector takes for a secret (signatures and
    tokens of presigned URLs, passwords, keys) written as ****."""
    return SecretDetector.mask_secrets(text).masked_text or text


def mask_chain(error: BaseException | None) -> None:
    """Mask, in place, the text of `error` and of the errors that caused it, as the event log,
    the console and the alert would show them."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        text = str(error)
        if masked(text) != text:
            for name in ("msg", "raw_msg", "message"):
                if isinstance(getattr(error, name, None), str):
                    setattr(error, name, masked(getattr(error, name)))
            error.args = tuple(masked(arg) if isinstance(arg, str) else arg for arg in error.args)
            if masked(str(error)) != str(error):
                error.args = (masked(text),)
        error = error.__cause__ or error.__context__


class LoadFailed(ExportFailed):
    """A load failed (loads/); retried on the same terms as an export."""


def is_transient(error: BaseException) -> bool:
    """True when the error, or what caused it, is one that a later attempt can get past."""
    from data_migration.files.storage import ConcurrentWriteError

    for cause in _chain(error):
        if isinstance(cause, ConcurrentWriteError):  # another run committed: redoing it adds nothing
            return False
        if isinstance(cause, _SNOWFLAKE_PERMANENT):
            return False
        if isinstance(cause, _SNOWFLAKE_TRANSIENT):
            return True
        if isinstance(cause, sf.OperationalError):  # the connector's network failures
            return True
        if isinstance(cause, sf.Error):  # SQL, authentication, permission
            return False
        if isinstance(cause, (BotoConnectionError, HTTPClientError, IncompleteReadError, ResponseStreamingError)):
            return True
        # The connector reads result bodies through requests/urllib3 and does not retry a
        # response cut mid-body; another attempt of the export can succeed.
        if isinstance(cause, _HTTP_TRANSIENT):
            return True
        if isinstance(cause, ClientError):
            error_info = cause.response.get("Error", {})
            status = cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            return error_info.get("Code") in _S3_TRANSIENT_CODES or status >= 500
        if isinstance(cause, (ConnectionError, TimeoutError)):
            return True
    return False


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__
