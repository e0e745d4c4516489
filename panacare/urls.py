"""URL routes of the site."""

from django.contrib import admin
from django.urls import include, path

from panacare.views import healthz
from users import api as user_api
from users import views as user_views

urlpatterns = [
    path("", user_views.home, name="home"),
    path("healthz", healthz, name="healthz"),
    path("api/signup/", user_api.signup, name="api_signup"),
    path(
        "api/activation/resend/",
        user_api.resend_activation,
        name="api_resend_activation",
    ),
    path("accounts/", include("users.urls")),
    path("admin/", admin.site.urls),
]
