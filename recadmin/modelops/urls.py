from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from recadmin.modelops.apis import (
    ModelListApi,
    ModelRollbackApi,
    ModelVersionPromoteApi,
    ModelVersionRetireApi,
    ModelVersionScaleApi,
    TrainingRunCollectionApi,
    TrainingRunDetailApi,
)

urlpatterns: list[URLPattern | URLResolver] = [
    path("models", ModelListApi.as_view(), name="model-list"),
    path("models/<str:name>/rollback", ModelRollbackApi.as_view(), name="model-rollback"),
    path("models/<str:name>/<int:version>/promote", ModelVersionPromoteApi.as_view(), name="model-version-promote"),
    path("models/<str:name>/<int:version>/retire", ModelVersionRetireApi.as_view(), name="model-version-retire"),
    path("models/<str:name>/<int:version>/scale", ModelVersionScaleApi.as_view(), name="model-version-scale"),
    path("training-runs", TrainingRunCollectionApi.as_view(), name="training-run-create"),
    path("training-runs/<int:run_id>", TrainingRunDetailApi.as_view(), name="training-run-detail"),
]
