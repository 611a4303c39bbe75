from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from recadmin.experiments import apis

urlpatterns: list[URLPattern | URLResolver] = [
    path("experiments", apis.ExperimentCollectionApi.as_view(), name="experiments"),
    path("experiments/<int:experiment_id>", apis.ExperimentDetailApi.as_view(), name="experiment-detail"),
    path("experiments/<int:experiment_id>/start", apis.ExperimentStartApi.as_view(), name="experiment-start"),
    path("experiments/<int:experiment_id>/stop", apis.ExperimentStopApi.as_view(), name="experiment-stop"),
    path("experiments/<int:experiment_id>/report", apis.ExperimentReportApi.as_view(), name="experiment-report"),
]
