"""The one error a bad setting raises, apart from the modules that read settings.

Both ``config`` and ``oauth_config`` raise it, and everything that starts the
app catches it, so it lives on its own; ``pulseboard.config`` and ``pulseboard``
export it too.
"""


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""
