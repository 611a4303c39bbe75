from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "recadmin.settings")
# Training shares the machine's cores with web workers and TorchServe: spinning OpenMP threads
# made each step several times slower under contention, measured on 2 cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

app = Celery("recadmin")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
