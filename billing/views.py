from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from accounts.views import current_membership

from .models import Plan


@login_required
def plans(request):
    current_membership(request)
    return render(request, "billing/plans.html", {"plans": Plan.objects.filter(is_active=True)})


@login_required
def costs(request):
    current_membership(request)
    return render(request, "billing/costs.html", {})
