"""The operator's reference, .env.example, documents every variable the app reads."""

import re

from pulseboard.config import PROJECT_ROOT


def test_every_variable_read_by_the_config_is_documented():
    package = PROJECT_ROOT / "src" / "pulseboard"
    source = "".join((package / name).read_text() for name in ("config.py", "oauth_config.py"))
    read = set(re.findall(r'read\.\w+\(\s*"([A-Z][A-Z0-9_]+)"', source))
    example = (PROJECT_ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", example, flags=re.M))
    assert read, "no variables found: the pattern above no longer matches config.py"
    assert read - documented == set()


def test_the_example_itself_is_a_valid_development_configuration():
    from dotenv import dotenv_values

    from pulseboard.config import load_config

    values = {k: v for k, v in dotenv_values(PROJECT_ROOT / ".env.example").items() if v}
    config = load_config(values)
    assert config["APP_ENV"] == "development"
