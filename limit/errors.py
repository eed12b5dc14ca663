"""The user-facing error types: one line on stderr, never a traceback.

`LimitError` is bad input or a condition the user must fix (exit 2: retrying cannot help).
`UnavailableError` is something that should be reachable and was not, a hub, S3 or GitHub (exit 75,
EX_TEMPFAIL): the Argo workflow retries those, with backoff.
"""

EXIT_BAD_INPUT = 2
EXIT_UNAVAILABLE = 75


class LimitError(Exception):
    """Bad input or an unrecoverable condition the user can fix."""


class UnavailableError(LimitError):
    """A remote resource could not be reached right now; trying again later may succeed."""


def is_transient(error: BaseException) -> bool:
    """Network trouble (unreachable, timed out, a server error or rate limit), in `error` or what caused it:
    worth retrying."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        # huggingface_hub's LocalEntryNotFoundError: the hub was unreachable (or offline) and nothing was cached
        if isinstance(cause, ConnectionError | TimeoutError) or type(cause).__name__ == "LocalEntryNotFoundError":
            return True
        status = getattr(getattr(cause, "response", None), "status_code", None)
        if isinstance(status, int) and (status >= 500 or status == 429):
            return True
        cause = cause.__cause__ or cause.__context__
    return False
