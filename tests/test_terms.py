"""The terms of use: a page of their own, linked from the sign-up form's checkbox."""

from __future__ import annotations

import re


def test_the_sign_up_checkbox_links_to_the_terms(client):
    html = client.get("/auth/register").get_data(as_text=True)
    label = re.search(r'<label class="form-check-label" for="accept">(.*?)</label>', html, re.S)
    assert label is not None
    assert re.search(r'<a href="/terms"[^>]*>terms of use</a>', label.group(1))


def test_the_terms_page_is_open_to_everyone(client):
    response = client.get("/terms")
    assert response.status_code == 200
    assert '<h1 class="page-title">Terms of use</h1>' in response.get_data(as_text=True)
