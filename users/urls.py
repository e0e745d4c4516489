from django.contrib.auth import views as auth_views
from django.urls import path

from users import views

urlpatterns = [
    path("signup/", views.signup, name="signup"),
    path("signup/done/", views.signup_done, name="signup_done"),
    path("activate/<str:uidb64>/<str:token>/", views.activate, name="activate"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
]
