"""URL routes of the site."""

from django.contrib import admin
from django.urls import include, path

from users import views as user_views

urlpatterns = [
    path("", user_views.home, name="home"),
    path("accounts/", include("users.urls")),
    path("admin/", admin.site.urls),
]
