"""Instance dashboard views (the dashboard home lists the organization's instances)."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from accounts.views import current_membership

from .models import Instance


@login_required
def dashboard(request):
    membership = current_membership(request)
    instances = Instance.objects.filter(organization=membership.organization).exclude(
        status=Instance.Status.PURGED
    )
    return render(request, "instances/dashboard.html", {"instances": instances})
