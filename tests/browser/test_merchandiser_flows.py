"""The merchandiser's main flows in a real browser: log in, the dashboard, a boost and a pin rule made
with the builder and the item picker and their effect in the preview, a training run started from
the admin with its progress, and a promotion."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.core.management import call_command

from recadmin.rules.models import BusinessRule
from tests.browser.conftest import log_in, shot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PREVIEW = "/admin/serving/servedrecommendation/preview/?scene=home&n=10"


@pytest.fixture
def demo_shop(transactional_db: None) -> None:
    call_command("seed_scenes", verbosity=0)
    call_command("generate_demo_shop", items=300, customers=60, events=4000, no_progress=True, verbosity=0)


def _final_list(page: Any) -> list[list[str]]:
    rows = page.locator("#final-list tbody tr")
    return [[cell.strip() for cell in rows.nth(i).locator("td").all_inner_texts()] for i in range(rows.count())]


def test_log_in_and_the_dashboard_renders_its_panels(page: Any, demo_shop: None) -> None:
    log_in(page)
    panels = page.locator("#recadmin-dashboard .recadmin-panel")
    assert panels.count() >= 3
    assert page.locator(".recadmin-panel-error").count() == 0, page.locator(".recadmin-panel-error").all_inner_texts()
    assert page.get_by_role("heading", name="Rules active now").is_visible()
    # Charts are server-side SVG: every chart a panel draws has a size on the page.
    for chart in page.locator("#recadmin-dashboard svg").all():
        box = chart.bounding_box()
        assert box is not None and box["width"] > 0 and box["height"] > 0
    # The sidebar groups the merchandiser's work; the page does not scroll sideways at 1280 px.
    for group in ["Catalog", "Scenes and rules", "Experiments", "Models"]:
        assert page.get_by_text(group, exact=True).first.is_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    shot(page, "01-dashboard")
    page.goto("/admin/catalog/item/")
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    shot(page, "02-items")
    assert not page.js_errors


def test_a_boost_and_a_pin_made_with_the_builder_show_in_the_preview(page: Any, demo_shop: None) -> None:
    log_in(page)
    page.goto(PREVIEW)
    before = _final_list(page)
    assert len(before) == 10
    # Boost the brand of the list's last item, pin an item that is not in the list at all.
    boosted_item = before[-1][1]
    from recadmin.catalog.models import Item

    brand = Item.objects.get(shop_id=boosted_item).brand
    outsider = Item.objects.filter(is_active=True).exclude(shop_id__in=[row[1] for row in before]).order_by("shop_id")
    pinned = outsider.last()
    assert pinned is not None

    # The boost: a builder row, the live count, and the effect before saving.
    page.goto("/admin/rules/businessrule/add/")
    page.fill("[name=name]", f"Boost {brand}")
    page.select_option("[name=kind]", "boost")
    assert page.locator("input.rb-shop-ids").is_hidden()  # the pin's fields are not shown for a boost
    page.check("[name=all_scenes]", force=True)
    page.select_option(".rb-row .rb-field", "brand")
    page.select_option(".rb-row .rb-op", "eq")
    page.fill(".rb-row .rb-value", brand)
    page.fill("[name=weight]", "1000")
    count = page.locator(".rb-count")
    page.wait_for_function("() => /Matches \\d+ of/.test(document.querySelector('.rb-count').textContent)")
    matched = int(re.search(r"Matches (\d+) of", count.inner_text()).group(1))  # type: ignore[union-attr]
    assert matched == Item.objects.filter(is_active=True, brand__iexact=brand).count()
    page.fill(".rb-effect-scene", "home")
    page.click(".rb-effect-run")
    page.wait_for_selector(".rb-effect-table")
    assert boosted_item in page.locator(".rb-effect-table").inner_text()
    shot(page, "03-boost-rule-builder")
    page.click("button[name=_save], input[name=_save]")
    page.wait_for_url("**/admin/rules/businessrule/")
    boost = BusinessRule.objects.get(kind="boost")
    assert boost.condition == {"field": "brand", "op": "eq", "value": brand}

    # The pin: the item picker by shop id.
    page.goto("/admin/rules/businessrule/add/")
    page.fill("[name=name]", "Pin the outsider")
    page.select_option("[name=kind]", "pin")
    assert page.locator(".rb-builder").is_hidden()  # no condition for a pin
    page.check("[name=all_scenes]", force=True)
    page.fill("[name=position]", "1")
    page.fill(".rb-item-search", pinned.shop_id)
    page.click(f".rb-picker-option[data-shop-id='{pinned.shop_id}']")
    assert page.input_value("input.rb-shop-ids") == pinned.shop_id
    shot(page, "04-pin-rule-picker")
    page.click("button[name=_save], input[name=_save]")
    page.wait_for_url("**/admin/rules/businessrule/")
    listing = page.locator("#result_list").inner_text()
    assert f"Pin {pinned.shop_id} at position 1 on all scenes" in listing
    assert f"Boost brand {brand} x1000 on all scenes" in listing
    shot(page, "05-rule-list")

    # The preview: the pinned item first, the boosted brand right after it.
    page.goto(PREVIEW)
    after = _final_list(page)
    assert after[0][1] == pinned.shop_id and "pinned at 1 by rule" in after[0][-1]
    assert after[1][1] != before[0][1] or Item.objects.get(shop_id=after[1][1]).brand == brand
    assert any(row[1] == boosted_item and "boosted by rule" in row[-1] for row in after)
    assert [row[1] for row in after].index(boosted_item) < len(before) - 1
    shot(page, "06-preview-with-rules")
    assert not page.js_errors


@pytest.mark.torchserve
def test_train_now_shows_the_run_progress_and_a_version_is_promoted(page: Any, torchserve_settings: Any) -> None:
    from recadmin.modelops.models import ModelVersion, TrainingRun
    from tests.modelops.conftest import shop_events

    shop_events()
    log_in(page)
    # Tasks run in-process in tests: the form's request returns once the run has trained and
    # registered its version in TorchServe.
    page.set_default_timeout(120_000)
    for seed in ("1", "2"):
        page.goto("/admin/modelops/trainingrun/add/")
        page.select_option("[name=kind]", "pop")
        page.check("[name=preset][value=quick]", force=True)
        # The hyperparameters sit in the collapsed "Advanced" section: open it to set the seed.
        field = page.locator("[name=seed]")
        if field.count():
            if not field.is_visible():
                page.get_by_text("Advanced: hyperparameters").first.click()
            field.fill(seed)
        page.click("button[name=_save], input[name=_save]")
        page.wait_for_url("**/admin/modelops/trainingrun/**")
        # The list's progress bar follows the run until it ends (it is polled while running).
        bar = page.locator(".recadmin-progress").first
        page.wait_for_function(
            "() => ['succeeded', 'failed'].includes(document.querySelector('.recadmin-progress')?.dataset.status)",
            timeout=90_000,
        )
        assert bar.get_attribute("data-status") == "succeeded", TrainingRun.objects.order_by("-id").first().error
        assert "100%" in page.locator(".recadmin-progress + .stage, .recadmin-progress ~ small").first.inner_text()
        shot(page, f"07-training-run-{seed}")
    assert TrainingRun.objects.filter(status="succeeded").count() == 2

    # Promote the version that is not the default, confirming if the admin asks.
    versions = list(ModelVersion.objects.filter(name="recommender").order_by("version"))
    assert len(versions) == 2
    target = next(v for v in versions if v.status != "default")
    page.goto("/admin/modelops/modelversion/")
    page.check(f"input[name=_selected_action][value='{target.pk}']", force=True)
    page.select_option("select[name=action]", "promote")
    with page.expect_navigation():
        # The theme shows "Run" once its script has seen the choice: submit as that button would.
        page.evaluate(
            "document.querySelector('button[name=index]').form.requestSubmit(document.querySelector('button[name=index]'))"
        )
    confirm = page.locator(
        "form :is(button, input)[type=submit]:is(:has-text('Yes'), :has-text('Confirm'), :has-text('Promote'),"
        " [value*='Yes'], [value*='Confirm'], [value*='Promote'])"
    )
    # Promotion asks first and says what will change (issue 11): the page must be there.
    assert "/modelversion/" in page.url and confirm.count(), page.url
    shot(page, "08-promote-confirmation")
    confirm.first.click()
    page.wait_for_load_state()
    assert "is now the default" in page.locator("body").inner_text()
    target.refresh_from_db()
    assert target.status == "default"
    shot(page, "09-promoted")
    page.goto("/admin/")
    assert f"recommender v{target.version}" in page.locator("#panel-models").inner_text()
    shot(page, "10-dashboard-after-promotion")
    assert not page.js_errors


# A change list measured against its box (the page column beside the sidebar): its rows, the
# column's own scroll width, and anything (toolbar, date drill-down, pagination) sticking out of it.
_TABLE_FIT = """() => {
  const table = document.querySelector('#result_list');
  if (!table) return null;
  const box = table.closest('.grow.min-w-0') || table.parentElement;
  const right = box.getBoundingClientRect().right;
  const out = [];
  for (const el of box.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    const over = Math.round(r.right - right);
    if (r.width > 0 && r.right > right + 0.5) out.push(`${el.tagName}.${el.className} +${over}px`);
  }
  const rows = [...table.querySelectorAll('tr')].map(tr => Math.ceil(tr.getBoundingClientRect().width));
  return {box: box.clientWidth, scroll: box.scrollWidth, rows: Math.max(0, ...rows), out: out.slice(0, 5)};
}"""


def _long_rows() -> None:
    """The longest values each list shows in a real shop: long ids, names and paths, many pages."""
    from django.contrib.auth import get_user_model

    from recadmin.catalog import services as catalog_services
    from recadmin.catalog.models import Customer

    Customer.objects.bulk_create(
        [Customer(shop_id=f"customer-{n:06d}-{'x' * 40}") for n in range(2500)], ignore_conflicts=True
    )
    parent = None
    for depth in range(6):
        parent = catalog_services.category_create(
            name=f"Seasonal outdoor furniture and garden accessories {depth}",
            slug=f"seasonal-outdoor-{depth}" * 2,
            parent=parent,
        )
    get_user_model().objects.create_user(
        "merchandising.team.lead.weekend",
        "merchandising.team.lead.weekend@example-long-domain.com",
        first_name="Maximiliane-Alexandra",
        last_name="Oberhausen-Wittgenstein",
        is_staff=True,
    )


def test_every_sidebar_change_list_fits_its_box_at_1280_px(page: Any, demo_shop: None) -> None:
    _long_rows()
    log_in(page)
    links = page.eval_on_selector_all(
        "#nav-sidebar a[href], aside a[href], nav a[href]", "links => links.map(a => a.getAttribute('href'))"
    )
    change_lists = sorted({href for href in links if re.fullmatch(r"/admin/[a-z_]+/[a-z_]+/", href or "")})
    assert len(change_lists) >= 10, change_lists
    too_wide = {}
    measured = set()
    for url in change_lists:
        page.goto(url)
        fit = page.evaluate(_TABLE_FIT)
        if fit is None:  # an empty list or a custom page: no table to measure
            continue
        measured.add(url)
        if max(fit["rows"], fit["scroll"]) > fit["box"] or fit["out"]:
            too_wide[url] = f"{max(fit['rows'], fit['scroll'])}/{fit['box']} {fit['out']}"
            shot(page, "too-wide-" + url.strip("/").replace("/", "-"))
    # The demo shop and the long rows fill these lists (the others may be empty, then have no table).
    expected = {"/admin/catalog/item/", "/admin/catalog/customer/", "/admin/catalog/category/", "/admin/events/event/"}
    assert expected | {"/admin/rules/scene/", "/admin/auth/user/"} <= measured, measured
    assert not too_wide, too_wide
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    assert not page.js_errors
