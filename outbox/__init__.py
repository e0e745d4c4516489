"""A transactional outbox for Django email.

Mail is written as a row inside the caller's transaction and delivered later by
``manage.py send_outbox``; see ``outbox.api`` for the public functions.
"""
