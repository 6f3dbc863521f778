"""Attacks the product refuses: one module per area, each test named for what is refused."""
