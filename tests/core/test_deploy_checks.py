"""`manage.py check --deploy` is clean with the production values .env.example documents (its
"production: NAME=value" notes), docker-compose.yml passes each of them to the app, and TorchServe's
management API is on loopback or the compose network only, always behind its token."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import yaml

from recadmin.modelops.torchserve import TorchServeConfig, read_properties, render_properties
from tests.conftest import REPO_ROOT

PRODUCTION = re.compile(r"production:\s*([A-Z_]+)=(\S+)")


def _production_values() -> dict[str, str]:
    return dict(PRODUCTION.findall((REPO_ROOT / ".env.example").read_text()))


def test_env_example_documents_the_https_settings() -> None:
    values = _production_values()
    assert {"SECURE_COOKIES", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "SECURE_PROXY_SSL_HEADER"} <= set(values)


def test_check_deploy_is_clean_with_the_documented_production_settings(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SECURE_", "DJANGO_"))},
        **_production_values(),
        "SECRET_KEY": secrets.token_urlsafe(60),
        "DEBUG": "false",
        "ALLOWED_HOSTS": "recs.example-shop.com",
        "RECADMIN_VAR_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_compose_passes_the_https_settings_to_the_app() -> None:
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    environment = compose["x-app"]["environment"]
    for name in _production_values():
        assert name in environment, name
        assert "${" + name in str(environment[name]), name


def test_torchserve_management_is_on_loopback_or_the_compose_network_with_its_token() -> None:
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    for published in compose["services"]["torchserve"].get("ports", []):
        assert str(published).startswith("127.0.0.1:"), published
    props = read_properties(REPO_ROOT / "recadmin" / "deploy" / "torchserve.config.properties")
    assert props["disable_token_authorization"] == "false"

    rendered = render_properties(TorchServeConfig.from_settings())
    local = dict(line.split("=", 1) for line in rendered.splitlines() if "=" in line and not line.startswith("#"))
    assert re.match(r"https?://(127\.0\.0\.1|localhost|\[::1\]):", local["management_address"])
    assert local["disable_token_authorization"] == "false"
