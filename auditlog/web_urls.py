from django.urls import URLPattern, URLResolver, path

from auditlog import views_decision, views_queue

urlpatterns: list[URLPattern | URLResolver] = [
    path("queue/", views_queue.queue_view, name="queue"),
    path("queue/respond/", views_queue.queue_respond, name="queue-respond"),
    path("queue/claim/", views_queue.queue_claim, name="queue-claim"),
    path("queue/stats/", views_queue.queue_stats_view, name="queue-stats"),
    path("decisions/<str:entry_id>/", views_decision.decision_page, name="decision-page"),
]
