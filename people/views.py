"""Sign-in, sign-out (django.contrib.auth's views, with our templates) and the home page."""

from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from approvals.pending import proposals_pending_for


class SignInView(auth_views.LoginView):
    template_name = "registration/login.html"
    redirect_authenticated_user = True


class SignOutView(auth_views.LogoutView):
    pass


def home(request: HttpRequest) -> HttpResponse:
    """Where sign-in lands (``LOGIN_REDIRECT_URL``): approvers and admins on the proposals when any wait for them
    to decide, everyone else signed in on the queue, and visitors on the sign-in page."""
    if not request.user.is_authenticated:
        return redirect("login")
    if proposals_pending_for(user=request.user).exists():
        return redirect("proposal-list")
    return redirect("queue")
