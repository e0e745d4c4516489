from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm

from users.models import User


class UserCreateForm(AdminUserCreationForm):
    class Meta:
        model = User
        fields = ("email", "name")


class UserEditForm(UserChangeForm[User]):
    class Meta:
        model = User
        fields = "__all__"


@admin.register(User)
# django-stubs types UserAdmin for AbstractUser only; ours has no username and
# the admin never touches one, so the runtime is fine.
class UserAdmin(BaseUserAdmin[User]):  # type: ignore[type-var]
    form = UserEditForm
    add_form = UserCreateForm
    ordering = ("-date_joined",)
    list_display = ("email", "name", "is_active", "is_staff", "date_joined")
    list_filter = ("is_active", "is_staff")
    search_fields = ("email", "name")
    fieldsets = (
        (None, {"fields": ("email", "name", "password")}),
        (
            "Status",
            {"fields": ("is_active", "activated_at", "is_staff", "is_superuser")},
        ),
        ("Dates", {"fields": ("date_joined", "last_login")}),
        ("Permissions", {"fields": ("groups", "user_permissions")}),
    )
    add_fieldsets = (
        (
            None,
            {"fields": ("email", "name", "usable_password", "password1", "password2")},
        ),
    )
    readonly_fields = ("date_joined", "last_login", "activated_at")
