"""The admin's theme settings (django-unfold's UNFOLD setting) and its sidebar.

Grouped by the merchandiser's work: what they look at (dashboard), what they sell (catalog), how
lists are steered (scenes and rules), what is tested (experiments) and what ranks (models). Users,
API keys and the task machinery sit under "System", collapsed, at the bottom.

Imported by the settings module: nothing here may import models (links are resolved lazily).
"""

from __future__ import annotations

from typing import Any

from django.templatetags.static import static
from django.urls import reverse_lazy


def _item(title: str, icon: str, url_name: str, permission: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"title": title, "icon": icon, "link": reverse_lazy(url_name)}
    if permission:
        # "app.view_model": the entry is hidden from staff who may not see the page.
        entry["permission"] = lambda request, perm=permission: request.user.has_perm(perm)
    return entry


NAVIGATION: list[dict[str, Any]] = [
    {
        "title": "Dashboard",
        "items": [
            _item("Dashboard", "dashboard", "admin:index"),
            _item("Metrics", "monitoring", "metrics-dashboard", "serving.view_servedrecommendation"),
            _item("Attributions", "ads_click", "admin:metrics_attribution_changelist", "metrics.view_attribution"),
        ],
    },
    {
        "title": "Catalog",
        "separator": True,
        "items": [
            _item("Items", "inventory_2", "admin:catalog_item_changelist", "catalog.view_item"),
            _item("Categories", "account_tree", "admin:catalog_category_changelist", "catalog.view_category"),
            _item("Customers", "group", "admin:catalog_customer_changelist", "catalog.view_customer"),
            _item("Events", "timeline", "admin:events_event_changelist", "events.view_event"),
        ],
    },
    {
        "title": "Scenes and rules",
        "separator": True,
        "items": [
            _item("Scenes", "view_quilt", "admin:rules_scene_changelist", "rules.view_scene"),
            _item("Rules", "rule", "admin:rules_businessrule_changelist", "rules.view_businessrule"),
            _item("Preview", "preview", "admin:serving_preview", "serving.view_servedrecommendation"),
            _item(
                "Served lists",
                "list_alt",
                "admin:serving_servedrecommendation_changelist",
                "serving.view_servedrecommendation",
            ),
        ],
    },
    {
        "title": "Experiments",
        "separator": True,
        "items": [
            _item("Experiments", "science", "admin:experiments_experiment_changelist", "experiments.view_experiment"),
        ],
    },
    {
        "title": "Models",
        "separator": True,
        "items": [
            _item(
                "Training runs", "model_training", "admin:modelops_trainingrun_changelist", "modelops.view_trainingrun"
            ),
            _item("Versions", "deployed_code", "admin:modelops_modelversion_changelist", "modelops.view_modelversion"),
        ],
    },
    {
        "title": "System",
        "separator": True,
        "collapsible": True,
        "items": [
            _item("Users", "person", "admin:auth_user_changelist", "auth.view_user"),
            _item("Groups", "groups", "admin:auth_group_changelist", "auth.view_group"),
            _item("API keys", "key", "admin:core_apikey_changelist", "core.view_apikey"),
            _item("Login lockouts", "lock", "admin:axes_accessattempt_changelist", "axes.view_accessattempt"),
            _item(
                "Periodic tasks",
                "schedule",
                "admin:django_celery_beat_periodictask_changelist",
                "django_celery_beat.view_periodictask",
            ),
            _item(
                "Intervals",
                "timer",
                "admin:django_celery_beat_intervalschedule_changelist",
                "django_celery_beat.view_intervalschedule",
            ),
            _item(
                "Crontabs",
                "event_repeat",
                "admin:django_celery_beat_crontabschedule_changelist",
                "django_celery_beat.view_crontabschedule",
            ),
            _item(
                "Task results",
                "task_alt",
                "admin:django_celery_results_taskresult_changelist",
                "django_celery_results.view_taskresult",
            ),
        ],
    },
]

UNFOLD: dict[str, Any] = {
    "SITE_TITLE": "recadmin",
    "SITE_HEADER": "recadmin",
    # "View site": there is no storefront here; the API documentation is what a site link can show.
    "SITE_URL": "/api/docs/",
    "SITE_SYMBOL": "recommend",
    "SHOW_HISTORY": True,
    "SHOW_VIEW_ON_SITE": True,
    "STYLES": [lambda request: static("recadmin/admin.css")],
    "DASHBOARD_CALLBACK": "recadmin.core.dashboard.dashboard_callback",
    "SIDEBAR": {
        "show_search": True,
        "show_all_applications": True,
        "navigation": NAVIGATION,
    },
}
