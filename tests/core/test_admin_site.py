"""The admin's own links lead somewhere."""

from __future__ import annotations

import re

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_view_site_in_the_admin_header_leads_to_a_page_that_exists(admin_client: Client) -> None:
    html = admin_client.get("/admin/").content.decode()
    match = re.search(r'<a href="([^"]+)"[^>]*>\s*View site\s*</a>', html)
    assert match, "no View site link"
    assert admin_client.get(match.group(1)).status_code == 200, match.group(1)
