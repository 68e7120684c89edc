from django.apps import AppConfig


class TunerConfig(AppConfig):
    name = "tuner"
    verbose_name = "Tuner"
