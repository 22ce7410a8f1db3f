"""Dashboard views for plans, checkout, the billing portal, costs and budgets.

Thin: each checks the role with current_membership(), scopes every query to the membership's
organization, and calls a service. The checkout takes only a plan slug from the form; price,
coupon and everything else come from our Plan row.
"""

import datetime as dt

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts import roles
from accounts.forms import apply_service_errors
from accounts.services import Actor
from accounts.views import current_membership

from . import rules, selectors, stripe_api
from .forms import BudgetForm
from .models import Budget
from .services import budgets as budget_services
from .services import subscriptions


def _absolute(request, name: str) -> str:
    return request.build_absolute_uri(reverse(name))


@login_required
def plans(request):
    membership = current_membership(request)
    org = membership.organization
    subscription = selectors.subscription_for(organization=org)
    return render(
        request,
        "billing/plans.html",
        {
            "plans": selectors.plans_on_sale(),
            "subscription": subscription,
            "entitled": bool(subscription and subscription.is_entitled),
            "can_manage": roles.role_allows(membership.role, roles.MANAGE_BILLING),
            "has_customer": bool(subscription and subscription.stripe_customer_id),
            "first_month": rules.first_month_offered(organization=org, user=request.user),
        },
    )


@login_required
@require_POST
def checkout(request):
    membership = current_membership(request, roles.MANAGE_BILLING)
    # Only the slug is read from the form: a price, amount or plan id posted along is ignored.
    plan = selectors.plans_on_sale().filter(slug=request.POST.get("plan", "")).first()
    if plan is None:
        messages.error(request, "Choose one of the plans below.")
        return redirect("billing:plans")
    try:
        url = subscriptions.checkout_start(
            actor=Actor.from_request(request),
            organization=membership.organization,
            plan=plan,
            success_url=_absolute(request, "billing:checkout_success")
            + "?session_id={CHECKOUT_SESSION_ID}",
            cancel_url=_absolute(request, "billing:checkout_cancel"),
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("billing:plans")
    except stripe_api.StripeApiError as exc:
        messages.error(request, exc.user_message)
        return redirect("billing:plans")
    return redirect(url)


@login_required
def checkout_success(request):
    membership = current_membership(request)
    # The session id in the URL proves nothing: the plan starts when Stripe's webhook says so.
    return render(
        request,
        "billing/checkout_success.html",
        {"subscription": selectors.subscription_for(organization=membership.organization)},
    )


@login_required
def checkout_cancel(request):
    current_membership(request)
    return render(request, "billing/checkout_cancel.html")


@login_required
@require_POST
def portal(request):
    membership = current_membership(request, roles.MANAGE_BILLING)
    try:
        url = subscriptions.portal_start(
            actor=Actor.from_request(request),
            organization=membership.organization,
            return_url=_absolute(request, "billing:plans"),
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("billing:plans")
    except stripe_api.StripeApiError as exc:
        messages.error(request, exc.user_message)
        return redirect("billing:plans")
    return redirect(url)


@login_required
def costs(request):
    membership = current_membership(request)
    org = membership.organization
    today = timezone.localdate()
    start = today - dt.timedelta(days=29)
    daily = selectors.daily_costs(organization=org, start=start, end=today)
    chart = {
        "labels": [d["day"].strftime("%d %b") for d in daily],
        "compute": [float(d["compute_usd"]) for d in daily],
        "llm": [float(d["llm_usd"]) for d in daily],
    }
    subscription = selectors.subscription_for(organization=org)
    return render(
        request,
        "billing/costs.html",
        {
            "month": today.strftime("%B %Y"),
            "totals": selectors.month_to_date_for_organization(organization=org, today=today),
            "by_instance": selectors.month_to_date_by_instance(organization=org, today=today),
            "by_session": selectors.month_to_date_by_session(organization=org, today=today),
            "chart": chart,
            "budgets": selectors.budgets_for(organization=org),
            "plan": subscription.plan if subscription and subscription.is_entitled else None,
            "can_manage": roles.role_allows(membership.role, roles.MANAGE_BILLING),
            "export_from": today.replace(day=1),
            "export_to": today,
            "unpriced": _unpriced_instances(org),
        },
    )


def _unpriced_instances(org) -> set:
    """Ids of the organization's instances whose model has no price at all (neither their own
    prices nor our table): their LLM cost reads "no price", not $0."""
    from . import capabilities, pricing

    known = pricing.priced_models()
    return {
        i.pk
        for i in capabilities.instances(org.pk, include_deleted=True)
        if pricing.own_price(i) is None and not pricing.in_table(i.provider, i.model_name, known)
    }


@login_required
def costs_export(request):
    """The costs page's download: the API's export (billing.services.exports), streamed."""
    from .api.serializers import UsageExportQuerySerializer
    from .api.views import export_response

    membership = current_membership(request, roles.VIEW_USAGE)
    query = UsageExportQuerySerializer(data=request.GET)
    if not query.is_valid():
        for name, errors in query.errors.items():
            for error in errors:
                messages.error(request, f"{name}: {error}")
        return redirect("billing:costs")
    data = query.validated_data
    return export_response(
        organization=membership.organization,
        start=data["from"],
        end=data["to"],
        group_by=data["group_by"],
        fmt=data["format"],
    )


@login_required
def budgets(request):
    membership = current_membership(request, roles.MANAGE_BILLING)
    org = membership.organization
    form = BudgetForm(request.POST or None, organization=org)
    if request.method == "POST" and form.is_valid():
        try:
            budget_services.budget_set(
                actor=Actor.from_request(request),
                organization=org,
                instance=form.cleaned_data["instance"],
                monthly_cap_usd=form.cleaned_data["monthly_cap_usd"],
                action=form.cleaned_data["action"],
            )
        except ValidationError as exc:
            apply_service_errors(form, exc)
        else:
            messages.success(request, "Budget saved.")
            return redirect("billing:budgets")
    return render(
        request,
        "billing/budgets.html",
        {"form": form, "budgets": selectors.budgets_for(organization=org)},
    )


@login_required
@require_POST
def budget_delete(request, budget_id: int):
    membership = current_membership(request, roles.MANAGE_BILLING)
    budget = get_object_or_404(Budget, pk=budget_id, organization=membership.organization)
    budget_services.budget_delete(actor=Actor.from_request(request), budget=budget)
    messages.success(request, "Budget removed.")
    return redirect("billing:budgets")
