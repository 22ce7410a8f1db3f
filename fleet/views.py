from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET


@require_GET
@never_cache
def healthz(request):
    """Liveness of the web process only: no database, no broker (the baseline in bench/api)."""
    return JsonResponse({"status": "ok"})
