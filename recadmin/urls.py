from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularRedocView, SpectacularSwaggerView

from recadmin.core.apis import healthz, metrics, readyz
from recadmin.core.schema_views import SchemaView
from recadmin.metrics.views import dashboard_view, experiment_report_view

api_v1 = [
    # serving first: its items/<id>/similar must win over catalog's items/<path:shop_id>.
    path("", include("recadmin.serving.urls")),
    path("", include("recadmin.core.urls")),
    path("", include("recadmin.catalog.urls")),
    path("", include("recadmin.events.urls")),
    path("", include("recadmin.rules.urls")),
    path("", include("recadmin.modelops.urls")),
    path("", include("recadmin.experiments.urls")),
    path("", include("recadmin.metrics.urls")),
]

urlpatterns = [
    # Before admin/: its catch-all would answer these paths with a 404.
    path("admin/metrics/dashboard/", admin.site.admin_view(dashboard_view), name="metrics-dashboard"),
    path(
        "admin/metrics/experiments/<int:experiment_id>/report/",
        admin.site.admin_view(experiment_report_view),
        name="metrics-experiment-report",
    ),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SchemaView.as_view(permission_classes=[], authentication_classes=[]), name="schema"),
    path(
        "api/docs/",
        SpectacularSwaggerView.as_view(url_name="schema", permission_classes=[], authentication_classes=[]),
        name="swagger-ui",
    ),
    path(
        "api/redoc/",
        SpectacularRedocView.as_view(
            url_name="schema", template_name="recadmin/redoc.html", permission_classes=[], authentication_classes=[]
        ),
        name="redoc",
    ),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
]

admin.site.site_header = "recadmin"
admin.site.site_title = "recadmin"
admin.site.index_title = "Dashboard"
# "View site": there is no storefront here; the API documentation is what a site link can show.
admin.site.site_url = "/api/docs/"
