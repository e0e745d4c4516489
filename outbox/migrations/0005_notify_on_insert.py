"""On PostgreSQL, tell listening dispatchers when outbox rows are committed.

NOTIFY is transactional: the notification is delivered when the inserting
transaction commits, and never for one that rolls back. One per statement is
enough; the payload-less notifications of one transaction are folded anyway.
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION outbox_notify_inserted() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('outbox_message', '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER outbox_notify_inserted
AFTER INSERT ON outbox_outboxmessage
FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify_inserted();
"""

DROP = """
DROP TRIGGER IF EXISTS outbox_notify_inserted ON outbox_outboxmessage;
DROP FUNCTION IF EXISTS outbox_notify_inserted();
"""


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("outbox", "0004_priority_and_sent_index")]

    operations = [migrations.RunPython(create, drop)]
