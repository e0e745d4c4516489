"""Accounts unique by the mailbox their address reaches (users.addresses)."""

from django.db import migrations, models


def fill_keys(apps, schema_editor):
    from users.addresses import mailbox_key

    User = apps.get_model("users", "User")
    for user in User.objects.all().only("pk", "email"):
        try:
            key = mailbox_key(user.email)
        except ValueError:
            key = user.email.lower()
        User.objects.filter(pk=user.pk).update(email_key=key)


class Migration(migrations.Migration):
    dependencies = [("users", "0003_password_reset_sent_at")]

    operations = [
        migrations.AddField(
            model_name="user",
            name="email_key",
            field=models.CharField(editable=False, max_length=320, null=True),
        ),
        migrations.RunPython(fill_keys, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="user",
            name="email_key",
            field=models.CharField(
                editable=False,
                help_text="The mailbox the address reaches, one spelling for all of them.",
                max_length=320,
                unique=True,
            ),
        ),
    ]
