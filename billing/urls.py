from django.urls import path

from . import views, webhooks

app_name = "billing"
urlpatterns = [
    path("", views.plans, name="plans"),
    path("checkout/", views.checkout, name="checkout"),
    path("checkout/success/", views.checkout_success, name="checkout_success"),
    path("checkout/cancel/", views.checkout_cancel, name="checkout_cancel"),
    path("portal/", views.portal, name="portal"),
    path("costs/", views.costs, name="costs"),
    path("costs/export/", views.costs_export, name="costs_export"),
    path("budgets/", views.budgets, name="budgets"),
    path("budgets/<int:budget_id>/delete/", views.budget_delete, name="budget_delete"),
    path("webhook/", webhooks.stripe_webhook, name="webhook"),
]
