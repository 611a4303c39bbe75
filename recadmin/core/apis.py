from __future__ import annotations

import hmac
import ipaddress
from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from recadmin.core.observability.metrics import metrics_exposition
from recadmin.core.observability.readiness import readiness_run


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process is up and answering. Touches nothing else."""
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: database and Redis (503 when one fails), the model server and this process's recent
    fallback rate ("degraded", still 200: lists are served from the fallback). Every check is bounded
    by READYZ_CHECK_TIMEOUT and they run in parallel."""
    status, checks = readiness_run()
    response = JsonResponse({"status": status, "checks": checks}, status=503 if status == "unavailable" else 200)
    # A 503 here is an answer, not a server error: no ERROR line from django.request for every probe
    # of an orchestrator while Redis or the database is down (the breaker logs the outage once).
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response


_LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


@lru_cache(maxsize=8)
def _networks(configured: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return _LOOPBACK + tuple(ipaddress.ip_network(n, strict=False) for n in configured)


def _client_allowed(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in _networks(tuple(settings.METRICS_ALLOWED_NETWORKS)))


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus exposition. Loopback clients, METRICS_ALLOWED_NETWORKS, or METRICS_BEARER_TOKEN.

    The client address is the socket's (REMOTE_ADDR), never a forwarded header a client could forge."""
    token = settings.METRICS_BEARER_TOKEN
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if token and header:
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            return _refuse(401, "wrong metrics token", token=True)
    elif not _client_allowed(request.META.get("REMOTE_ADDR", "")):
        if token:
            return _refuse(401, "a metrics token is required from this address", token=True)
        return _refuse(403, "metrics are served to loopback and METRICS_ALLOWED_NETWORKS only")
    from prometheus_client import CONTENT_TYPE_LATEST

    return HttpResponse(metrics_exposition(), content_type=CONTENT_TYPE_LATEST)


def _refuse(status: int, message: str, *, token: bool = False) -> JsonResponse:
    response = JsonResponse({"message": message, "extra": {}}, status=status)
    if token:
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return response
