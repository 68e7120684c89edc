"""Errors of the approval gate, the watchdog and the audit trail. Mapped to HTTP once, in loopsite."""

from loopsite.exceptions import Conflict, Forbidden, NotFound, ValidationFailed


class ProposalNotFound(NotFound):
    pass


class NotAnApprover(Forbidden):
    """Only approvers (and admins) decide proposals and roll back configs."""


class NotADesignatedApprover(NotAnApprover):
    """The agent has designated approvers, and this approver is not one of them (nor an admin)."""

    code = "not_designated_approver"


class AlreadyApproved(Conflict):
    """This approver has signed off the proposal already; the others' approvals are still needed."""

    code = "already_approved"


class SelfApprovalError(Forbidden):
    """Nobody approves a change they made (contract rule 6)."""

    code = "self_approval"


class GuardrailViolation(ValidationFailed):
    """A value outside the 20 % move or the threshold's bounds (contract rule 3)."""

    code = "guardrail"


class AlreadyDecided(Conflict):
    """The proposal is no longer pending: someone decided it, or it expired or was superseded."""


class RollbackRefused(ValidationFailed):
    pass


class AgentLocked(Conflict):
    """The agent's config is locked: only a rollback changes it (contract rule 11)."""

    code = "locked"


class WatchNotFound(NotFound):
    """No watched change of that agent and version number."""


class WatchClosed(Conflict):
    """The watched change is judged already (good or rolled back): nothing is left to decide."""


class CanaryServing(Conflict):
    """A canary of the agent is serving: no other change goes live until it is promoted or aborted."""

    code = "canary_serving"


class CanaryNotFound(NotFound):
    """No canary with that id."""


class CanaryClosed(Conflict):
    """The canary was promoted or aborted already."""
