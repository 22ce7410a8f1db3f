from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from accounts.views import current_membership

from .models import Session


@login_required
def session_list(request):
    membership = current_membership(request)
    sessions = Session.objects.filter(organization=membership.organization).select_related(
        "instance"
    )[:100]
    return render(request, "sessions_mgmt/list.html", {"sessions": sessions})
