"""Sign-in, sign-out (django.contrib.auth's views, with our templates) and the home page."""

from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect


class SignInView(auth_views.LoginView):
    template_name = "registration/login.html"
    redirect_authenticated_user = True


class SignOutView(auth_views.LogoutView):
    pass


def home(request: HttpRequest) -> HttpResponse:
    """Signed-in users land on the queue; everyone else on the sign-in page."""
    if request.user.is_authenticated:
        return redirect("queue")
    return redirect("login")
