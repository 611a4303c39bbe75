from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from recadmin.core.apis import healthz, metrics, readyz

api_v1 = [
    # serving first: its items/<id>/similar must win over catalog's items/<path:shop_id>.
    path("", include("recadmin.serving.urls")),
    path("", include("recadmin.core.urls")),
    path("", include("recadmin.catalog.urls")),
    path("", include("recadmin.events.urls")),
    path("", include("recadmin.rules.urls")),
    path("", include("recadmin.modelops.urls")),
    path("", include("recadmin.experiments.urls")),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(permission_classes=[], authentication_classes=[]), name="schema"),
    path(
        "api/docs/",
        SpectacularSwaggerView.as_view(url_name="schema", permission_classes=[], authentication_classes=[]),
        name="swagger-ui",
    ),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
]

admin.site.site_header = "recadmin"
admin.site.site_title = "recadmin"
admin.site.index_title = "Dashboard"
