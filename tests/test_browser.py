"""The account flow in a real browser: Debian's Chromium driven by Playwright.

Screenshots of each page go to test-output/screenshots/.
"""

import re
import shutil
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connections

from users.models import User

SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-output" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "a sturdy passphrase 42"


@pytest.fixture
def page(monkeypatch, tmp_path):
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls
    # the test makes between page actions are still plain synchronous code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        context = browser.new_context(viewport={"width": 900, "height": 800})
        yield context.new_page()
        context.close()
        browser.close()
        # The ORM calls made while Playwright's loop counts as running got a
        # connection of their own; close it here, in that same context, or
        # it holds the test database open past the session.
        connections.close_all()


def shoot(page, name):
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


@pytest.mark.django_db(transaction=True)
def test_person_signs_up_activates_from_the_mail_and_logs_in(
    live_server, sink, settings, page
):
    settings.SITE_URL = live_server.url

    page.goto(f"{live_server.url}/accounts/signup/")
    shoot(page, "1-signup-form")
    page.fill("#id_email", "Pat@Example.test")
    page.fill("#id_name", "Pat Patient")
    page.fill("#id_password1", PASSWORD)
    page.fill("#id_password2", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/accounts/signup/done/")
    shoot(page, "2-check-inbox")
    assert "Check your inbox" in page.content()

    call_command("send_outbox")
    [received] = sink.mailbox.wait_for(1)
    html = received.message.get_body(preferencelist=("html",)).get_content()
    link = re.search(r'href="([^"]+/accounts/activate/[^"]+)"', html)
    assert link, html

    page.goto(link.group(1))
    shoot(page, "3-activated")
    assert "Your account is active" in page.content()
    assert User.objects.get().is_active

    page.click("text=Log in")
    page.fill("#id_username", "pat@example.TEST")
    page.fill("#id_password", PASSWORD)
    shoot(page, "4-login-form")
    page.click("button[type=submit]")
    page.wait_for_selector("#current-user")
    shoot(page, "5-logged-in")
    assert page.inner_text("#current-user") == "Pat@example.test"


@pytest.mark.django_db(transaction=True)
def test_form_errors_are_shown_next_to_their_fields(live_server, page):
    page.goto(f"{live_server.url}/accounts/signup/")
    page.fill("#id_email", "not an address")
    page.fill("#id_name", "Pat")
    page.fill("#id_password1", "short")
    page.fill("#id_password2", "other")
    page.click("button[type=submit]")

    shoot(page, "6-signup-errors")
    text = page.content()
    assert "Enter a valid email address" in text
    assert "The two passwords differ" in text
