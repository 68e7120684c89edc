from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("loopsite.api_urls")),
    path("", include("people.urls")),  # sign-in, sign-out, home
    path("", include("auditlog.web_urls")),  # the review queue
    path("", include("approvals.web_urls")),  # proposals, the audit trail
    path("", include("thresholds.web_urls")),  # the dashboard
]

handler403 = "loopsite.errors.forbidden"
handler404 = "loopsite.errors.not_found"
