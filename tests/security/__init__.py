"""Attacks the product refuses: one module per area, each test named for what is refused.

docs/SECURITY.md lists every attack with what stops it and the test that proves
it, here or in the area's own module (CSRF, redirects, token scopes, socket
hijack), so the list can be read without reading the tests.
"""
