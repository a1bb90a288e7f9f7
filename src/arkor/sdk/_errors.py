"""Errors raised by the SDK.

    CloudApiError                 status, message (every SDK failure is one of these)
    ├── BadRequestError           400  the request was invalid; message names the field
    ├── AuthenticationError       401  missing or expired token: run `arkor login`
    ├── PermissionDeniedError     403  not a member of that org or project
    ├── NotFoundError             404  no such deployment / key / job in this scope
    ├── ConflictError             409  slug taken, job already finished, state mismatch
    ├── UnsupportedClientError    426  this SDK is too old for the server: upgrade it
    ├── ServerError               5xx  the server failed; retrying may help
    ├── ApiConnectionError        -    the server could not be reached (status is None)
    │   └── ApiTimeoutError       -    the server did not answer in time
    └── CredentialsError          -    local credentials/state cannot be used
"""

from __future__ import annotations


class CloudApiError(Exception):
    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, message={self.message!r})"


class BadRequestError(CloudApiError):
    pass


class AuthenticationError(CloudApiError):
    pass


class PermissionDeniedError(CloudApiError):
    pass


class NotFoundError(CloudApiError):
    pass


class ConflictError(CloudApiError):
    pass


class UnsupportedClientError(CloudApiError):
    pass


class ServerError(CloudApiError):
    pass


class ApiConnectionError(CloudApiError):
    def __init__(self, message: str) -> None:
        super().__init__(None, message)


class ApiTimeoutError(ApiConnectionError):
    pass


class CredentialsError(CloudApiError):
    def __init__(self, message: str) -> None:
        super().__init__(None, message)


_BY_STATUS: dict[int, type[CloudApiError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    426: UnsupportedClientError,
}


def error_for_status(status: int, message: str) -> CloudApiError:
    if status >= 500:
        return ServerError(status, message)
    return _BY_STATUS.get(status, CloudApiError)(status, message)
