from django.apps import AppConfig
from django.db.models.signals import post_save


class RolloutsConfig(AppConfig):
    name = "rollouts"
    verbose_name = "Shadow values and canary rollouts"

    def ready(self) -> None:
        from rollouts.signals import proposal_saved

        post_save.connect(proposal_saved, sender="tuner.Proposal", dispatch_uid="rollouts.proposal_saved")
