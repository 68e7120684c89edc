from django.urls import URLPattern, URLResolver, path

from thresholds import views_dashboard

urlpatterns: list[URLPattern | URLResolver] = [
    path("dashboard/", views_dashboard.dashboard, name="dashboard"),
    path("dashboard/<str:agent_id>/", views_dashboard.dashboard_agent, name="dashboard-agent"),
]
