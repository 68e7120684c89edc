"""Domain errors shared by the apps. Services raise these; one handler maps them to HTTP."""


class DomainError(Exception):
    """A request that the rules refuse. ``field`` names the input at fault, where there is one."""

    status_code = 400
    code = "invalid"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(DomainError):
    status_code = 404
    code = "not_found"


class Forbidden(DomainError):
    status_code = 403
    code = "forbidden"


class Conflict(DomainError):
    status_code = 409
    code = "conflict"


class ValidationFailed(DomainError):
    status_code = 400
    code = "invalid"
