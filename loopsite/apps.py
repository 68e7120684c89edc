from django.apps import AppConfig


class LoopsiteConfig(AppConfig):
    name = "loopsite"
    verbose_name = "loopsite"
