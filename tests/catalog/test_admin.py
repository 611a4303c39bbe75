from __future__ import annotations

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from recadmin.catalog.models import Category, Item
from tests.factories import CategoryFactory, CustomerFactory, EventFactory, ItemFactory

pytestmark = pytest.mark.django_db


def test_item_pages_load(admin_client: Client) -> None:
    item = ItemFactory()
    for url in [
        "/admin/catalog/item/",
        "/admin/catalog/item/?q=sku",
        f"/admin/catalog/item/?brand={item.brand}&in_stock__exact=1&is_active__exact=1",
        f"/admin/catalog/item/{item.pk}/change/",
        "/admin/catalog/item/add/",
        "/admin/catalog/item/import/",
        "/admin/catalog/item/export/",
    ]:
        assert admin_client.get(url).status_code == 200, url


def test_category_tree_and_customer_pages_load(admin_client: Client) -> None:
    root = CategoryFactory(slug="beauty")
    CategoryFactory(slug="hair", parent=root)
    customer = CustomerFactory()
    for url in [
        "/admin/catalog/category/",
        f"/admin/catalog/category/{root.pk}/change/",
        "/admin/catalog/category/add/",
        "/admin/catalog/customer/",
        f"/admin/catalog/customer/{customer.pk}/change/",
        "/admin/catalog/customer/add/",
    ]:
        assert admin_client.get(url).status_code == 200, url


def test_category_added_in_the_admin_gets_its_path(admin_client: Client) -> None:
    root = CategoryFactory(slug="beauty")
    response = admin_client.post("/admin/catalog/category/add/", {"name": "Hair", "slug": "hair", "parent": root.pk})
    assert response.status_code == 302
    assert Category.objects.get(slug="hair").path == "/beauty/hair/"


def test_customer_page_shows_only_the_latest_20_events(admin_client: Client) -> None:
    customer = CustomerFactory()
    events = [EventFactory(customer=customer) for _ in range(25)]
    html = admin_client.get(f"/admin/catalog/customer/{customer.pk}/change/").content.decode()
    newest = sorted(events, key=lambda e: e.occurred_at, reverse=True)
    assert all(e.event_id in html for e in newest[:20])
    assert not any(f">{e.event_id}<" in html for e in newest[20:])


CSV_IMPORT = (
    "shop_id,title,category,brand,price,currency,stock_quantity,in_stock,is_active,attributes\n"
    'N-1,Brush,hair,acme,9.90,EUR,5,1,1,"{""size"": ""m""}"\n'
    "N-2,Bad price,hair,acme,-4,EUR,5,1,1,{}\n"
)


def _upload(admin_client: Client, content: str) -> str:
    response = admin_client.post(
        "/admin/catalog/item/import/",
        {"format": "0", "resource": "0", "import_file": SimpleUploadedFile("items.csv", content.encode(), "text/csv")},
    )
    assert response.status_code == 200
    return response.content.decode()


def test_import_preview_shows_per_row_errors_and_stores_nothing(admin_client: Client) -> None:
    CategoryFactory(slug="hair")
    html = _upload(admin_client, CSV_IMPORT)
    assert "Errors" in html or "errors" in html
    assert "price" in html
    assert not Item.objects.filter(shop_id__startswith="N-").exists()


def test_import_confirm_stores_valid_rows(admin_client: Client) -> None:
    CategoryFactory(slug="hair")
    html = _upload(admin_client, CSV_IMPORT.splitlines()[0] + "\n" + CSV_IMPORT.splitlines()[1] + "\n")
    fields = dict(re.findall(r'name="(import_file_name|original_file_name|format|resource)"[^>]*value="([^"]*)"', html))
    assert "import_file_name" in fields, html[:2000]
    response = admin_client.post("/admin/catalog/item/process_import/", fields)
    assert response.status_code == 302
    item = Item.objects.get(shop_id="N-1")
    assert (item.category.slug, str(item.price), item.attributes) == ("hair", "9.90", {"size": "m"})


def test_export_returns_csv_with_the_chosen_columns(admin_client: Client) -> None:
    ItemFactory(shop_id="E-1", title="Exported")
    response = admin_client.post(
        "/admin/catalog/item/export/",
        {"format": "0", "resource": "0", "itemresource_shop_id": "on", "itemresource_title": "on"},
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response.content.decode().splitlines() == ["shop_id,title", "E-1,Exported"]


IMPORT_HEADER = "shop_id,title,category,brand,price,currency,stock_quantity,in_stock,is_active,attributes\n"


def _import(admin_client: Client, content: str, *, clear_blank: bool = False) -> str:
    data = {
        "format": "0",
        "resource": "0",
        "import_file": SimpleUploadedFile("items.csv", content.encode(), "text/csv"),
    }
    if clear_blank:
        data["clear_blank"] = "on"
    preview = admin_client.post("/admin/catalog/item/import/", data)
    assert preview.status_code == 200
    html = preview.content.decode()
    names = "import_file_name|original_file_name|format|resource|clear_blank"
    fields = dict(re.findall(rf'name="({names})"[^>]*value="([^"]*)"', html))
    assert "import_file_name" in fields, html[:3000]
    response = admin_client.post("/admin/catalog/item/process_import/", fields)
    assert response.status_code == 302
    return html


def test_a_blank_cell_leaves_the_stored_value_alone_and_the_preview_says_what_changes(admin_client: Client) -> None:
    hair = CategoryFactory(slug="hair")
    ItemFactory(shop_id="A-1", title="Brush", category=hair, price="9.90", attributes={"color": "green"})

    html = _import(admin_client, IMPORT_HEADER + "A-1,Brush,hair,acme,12.50,EUR,5,1,1,\n")

    item = Item.objects.get(shop_id="A-1")
    assert item.attributes == {"color": "green"}
    assert str(item.price) == "12.50"
    changes = html[html.index("What changes") :]
    assert "changes" in changes and "price" in changes.split("·")[0]
    assert "blank, left as stored: attributes" in changes


def test_blank_cells_clear_stored_values_only_when_the_import_says_so(admin_client: Client) -> None:
    hair = CategoryFactory(slug="hair")
    ItemFactory(shop_id="A-2", title="Comb", category=hair, price="3.00", attributes={"color": "green"})

    html = _import(admin_client, IMPORT_HEADER + "A-2,Comb,hair,acme,3.00,EUR,5,1,1,\n", clear_blank=True)

    assert Item.objects.get(shop_id="A-2").attributes == {}
    assert "Blank cells will clear the stored values" in html
    assert "attributes" in html[html.index("What changes") :]


def test_the_import_form_offers_the_clear_blank_option_off_by_default(admin_client: Client) -> None:
    html = admin_client.get("/admin/catalog/item/import/").content.decode()
    assert 'name="clear_blank"' in html and "Blank cells clear the stored value" in html
    assert "checked" not in re.search(r'<input[^>]*name="clear_blank"[^>]*>', html).group(0)


def test_the_item_list_shows_a_thumbnail_where_an_item_has_an_image_url(admin_client: Client) -> None:
    ItemFactory(shop_id="PIC-1", attributes={"image_url": "https://cdn.example.com/pic-1.jpg"})
    ItemFactory(shop_id="NOPIC-1", attributes={"image_url": "javascript:alert(1)"})
    page = admin_client.get("/admin/catalog/item/").content.decode()
    assert '<img src="https://cdn.example.com/pic-1.jpg"' in page
    assert "javascript:alert" not in page
