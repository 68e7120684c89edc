from loopsite.exceptions import Conflict, NotFound, ValidationFailed


class InvalidEntry(ValidationFailed):
    pass


class DecisionNotFound(NotFound):
    pass


class EntryConflict(Conflict):
    """The id exists with other content."""


class AlreadyResponded(Conflict):
    """A second response to a decision; the first stands."""


class AmbiguousEntryId(Conflict):
    """An id named without its agent that more than one agent uses: the caller must say which agent."""
