from loopsite.exceptions import Conflict, NotFound, ValidationFailed


class UnknownRole(ValidationFailed):
    pass


class InvalidUsername(ValidationFailed):
    pass


class UserExists(Conflict):
    pass


class UserNotFound(NotFound):
    pass


class InvalidPassword(ValidationFailed):
    pass
