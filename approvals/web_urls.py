from django.urls import URLPattern, URLResolver, path

from approvals import views

urlpatterns: list[URLPattern | URLResolver] = [
    path("proposals/", views.proposal_list, name="proposal-list"),
    path("proposals/new/", views.proposal_new, name="proposal-new"),
    path("proposals/<int:pk>/", views.proposal_detail, name="proposal-detail"),
    path("proposals/<int:pk>/comment/", views.proposal_comment_page, name="proposal-comment"),
    path("proposals/<int:pk>/canary/<str:action>/", views.canary_end_page, name="canary-end"),
    path("audit/", views.audit_trail, name="audit-trail"),
    path("rollback/<str:agent_id>/", views.config_rollback_page, name="config-rollback"),
    path("lock/<str:agent_id>/", views.config_lock_page, name="config-lock"),
    path("watch/<str:agent_id>/v<int:number>/", views.version_watch_page, name="version-watch"),
]
