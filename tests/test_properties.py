"""Property tests: no input to the sign-up form or the JSON API gives a 500."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

text = st.text(max_size=300)
field_values = st.one_of(
    text,
    st.emails(),
    st.integers(),
    st.none(),
    st.booleans(),
    st.lists(text, max_size=3),
    st.floats(allow_nan=False),
)
examples = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.django_db
@examples
@given(
    email=st.one_of(text, st.emails()),
    name=text,
    password1=text,
    password2=text,
)
def test_signup_form_answers_every_input_without_a_server_error(
    client, email, name, password1, password2
):
    response = client.post(
        "/accounts/signup/",
        {"email": email, "name": name, "password1": password1, "password2": password2},
    )

    assert response.status_code in {302, 400}


@pytest.mark.django_db
@examples
@given(
    body=st.one_of(
        st.dictionaries(
            st.sampled_from(["email", "name", "password", "other"]), field_values
        ),
        st.lists(field_values, max_size=3),
        field_values,
    )
)
def test_signup_api_answers_every_json_body_without_a_server_error(client, body):
    response = client.post(
        "/api/signup/", json.dumps(body), content_type="application/json"
    )

    assert response.status_code in {201, 400}
    assert "detail" in response.json()


@pytest.mark.django_db
@examples
@given(raw=st.binary(max_size=300))
def test_signup_api_answers_every_byte_string_without_a_server_error(client, raw):
    response = client.post("/api/signup/", raw, content_type="application/json")

    # An empty body is sent without a content type, hence the 415.
    assert response.status_code in {201, 400, 415}


@pytest.mark.django_db
@examples
@given(email=st.one_of(text, st.emails()))
def test_resend_answers_every_input_without_a_server_error(client, email):
    response = client.post("/accounts/activation/resend/", {"email": email})

    assert response.status_code in {200, 400}
