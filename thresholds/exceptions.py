from loopsite.exceptions import Conflict, NotFound, ValidationFailed


class AgentNotFound(NotFound):
    pass


class AgentExists(Conflict):
    pass


class InvalidThreshold(ValidationFailed):
    pass
