"""Error pages: styled for people, JSON for machines, and failures logged."""

import logging


def test_unknown_page_gives_the_styled_404(client):
    response = client.get("/no/such/page")
    assert response.status_code == 404
    page = response.get_data(as_text=True)
    assert "Page not found" in page
    assert "bootstrap.min.css" in page


def test_unknown_api_path_answers_json(client):
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.get_json()["error"] == "Page not found"


def test_an_exception_gives_the_styled_500_and_is_logged(make_app, caplog):
    app = make_app()
    app.config["PROPAGATE_EXCEPTIONS"] = False  # behave as in production, not as a test

    @app.get("/explode")
    def explode():
        raise RuntimeError("kaboom for the log")

    with caplog.at_level(logging.ERROR):
        response = app.test_client().get("/explode")
    assert response.status_code == 500
    assert "Something went wrong" in response.get_data(as_text=True)
    assert "kaboom for the log" in caplog.text
    assert "kaboom" not in response.get_data(as_text=True)


def test_wrong_method_is_405_with_allow_header(client):
    response = client.get("/auth/logout")
    assert response.status_code == 405
    assert "POST" in response.headers["Allow"]


def test_responses_carry_security_headers_and_a_strict_csp(client):
    response = client.get("/")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp


def test_brand_css_carries_the_configured_colour(make_app):
    client = make_app(BRAND_PRIMARY_COLOR="#0f766e").test_client()
    response = client.get("/brand.css")
    assert response.status_code == 200
    assert response.mimetype == "text/css"
    assert "#0f766e" in response.get_data(as_text=True)
    assert (
        client.get("/brand.css", headers={"If-None-Match": response.headers["ETag"]}).status_code
        == 304
    )
