"""Staff admin for billing. Plans and prices are data staff edit, saved and deleted through
billing.services.catalog (validated, audited: who changed which field from what to what); what
mirrors Stripe or is computed (subscriptions, events, the ledger) is read-only here, changed only
through services."""

from django.contrib import admin, messages

from accounts.admin import ReadOnlyAdmin
from accounts.services import Actor

from .models import (
    BillingPause,
    Budget,
    MeterReport,
    ModelPrice,
    Plan,
    SessionUsageDay,
    StripeEvent,
    Subscription,
    UsageDay,
)
from .services import catalog, stripe_events


class CatalogAdmin(admin.ModelAdmin):
    """Saves and deletes through a catalog service (one implementation, audited), never with
    the admin's own obj.save()/obj.delete()."""

    def save_row(self, actor: Actor, obj) -> None:
        raise NotImplementedError

    def delete_row(self, actor: Actor, obj) -> None:
        raise NotImplementedError

    def save_model(self, request, obj, form, change):
        self.save_row(Actor.from_request(request, via="admin"), obj)

    def delete_model(self, request, obj):
        self.delete_row(Actor.from_request(request, via="admin"), obj)

    def delete_queryset(self, request, queryset):
        actor = Actor.from_request(request, via="admin")
        for obj in queryset:
            self.delete_row(actor, obj)


@admin.register(Plan)
class PlanAdmin(CatalogAdmin):
    list_display = [
        "name",
        "slug",
        "monthly_price_cents",
        "first_month_price_cents",
        "max_instances",
        "max_memory_mb",
        "max_cpus",
        "included_llm_credit_cents",
        "is_active",
        "sort_order",
    ]
    list_editable = ["is_active", "sort_order"]
    list_filter = ["is_active"]
    search_fields = ["name", "slug", "stripe_price_id"]
    prepopulated_fields = {"slug": ["name"]}
    fieldsets = [
        (None, {"fields": ["name", "slug", "description", "is_active", "sort_order"]}),
        (
            "Price (Stripe)",
            {
                "fields": [
                    "monthly_price_cents",
                    "first_month_price_cents",
                    "stripe_price_id",
                    "stripe_first_month_coupon_id",
                ],
                "description": "The Stripe price must charge monthly_price_cents a month. Leave "
                "the coupon empty: checkout creates the once-only coupon (monthly minus first "
                "month) itself.",
            },
        ),
        ("Limits", {"fields": ["max_instances", "max_memory_mb", "max_cpus"]}),
        (
            "Retention",
            {
                "fields": [
                    "session_idle_days",
                    "session_max_count",
                    "backup_daily_retention",
                    "backup_weekly_retention",
                ]
            },
        ),
        ("Usage", {"fields": ["included_llm_credit_cents", "compute_cents_per_hour"]}),
    ]

    def save_row(self, actor, obj):
        catalog.plan_save(actor=actor, plan=obj)

    def delete_row(self, actor, obj):
        catalog.plan_delete(actor=actor, plan=obj)


@admin.register(Subscription)
class SubscriptionAdmin(ReadOnlyAdmin):
    list_display = [
        "organization",
        "plan",
        "status",
        "current_period_end",
        "cancel_at_period_end",
        "grace_until",
        "updated_at",
    ]
    list_filter = ["status", "plan", "cancel_at_period_end"]
    search_fields = [
        "organization__name",
        "organization__slug",
        "stripe_customer_id",
        "stripe_subscription_id",
    ]
    list_select_related = ["organization", "plan"]
    actions = ["end_comp"]

    @admin.action(description="End the complimentary plan (instances paused after the notice)")
    def end_comp(self, request, queryset):
        from django.core.exceptions import ValidationError

        from .services import subscriptions as subscription_services

        actor = Actor.from_request(request, via="admin")
        ended = 0
        for sub in queryset.select_related("organization"):
            try:
                subscription_services.subscription_comp_end(
                    actor=actor, organization=sub.organization
                )
                ended += 1
            except ValidationError as exc:
                self.message_user(request, f"{sub.organization}: {exc.messages[0]}", messages.ERROR)
        if ended:
            self.message_user(request, f"{ended} comp(s) ended.", messages.SUCCESS)

    def has_change_permission(self, request, obj=None):
        # Needed for actions to show; every field stays read-only.
        return request.user.is_superuser

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyAdmin):
    list_display = ["event_id", "type", "state", "received_at", "processed_at"]
    list_filter = ["state", "type"]
    search_fields = ["event_id", "type"]
    date_hierarchy = "received_at"
    actions = ["retry"]

    @admin.action(description="Process again (failed events)")
    def retry(self, request, queryset):
        actor = Actor.from_request(request, via="admin")
        n = sum(stripe_events.stripe_event_retry(actor=actor, event=e) for e in queryset)
        self.message_user(request, f"{n} event(s) queued again.", messages.SUCCESS)

    def has_change_permission(self, request, obj=None):
        # Needed for actions to show; every field stays read-only.
        return request.user.is_superuser

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]


@admin.register(ModelPrice)
class ModelPriceAdmin(CatalogAdmin):
    list_display = [
        "provider",
        "model",
        "input_per_mtok",
        "output_per_mtok",
        "cache_read_per_mtok",
        "cache_write_per_mtok",
        "effective_from",
    ]
    list_filter = ["provider"]
    search_fields = ["model"]

    def save_row(self, actor, obj):
        catalog.model_price_save(actor=actor, price=obj)

    def delete_row(self, actor, obj):
        catalog.model_price_delete(actor=actor, price=obj)


@admin.register(UsageDay)
class UsageDayAdmin(ReadOnlyAdmin):
    list_display = [
        "day",
        "organization",
        "instance",
        "running_seconds",
        "input_tokens",
        "output_tokens",
        "compute_cost_usd",
        "llm_cost_usd",
    ]
    list_filter = ["day"]
    search_fields = ["organization__name", "instance__name"]
    list_select_related = ["organization", "instance"]
    date_hierarchy = "day"


@admin.register(SessionUsageDay)
class SessionUsageDayAdmin(ReadOnlyAdmin):
    list_display = ["day", "organization", "instance", "session", "llm_cost_usd"]
    search_fields = ["organization__name", "instance__name", "session__session_key"]
    list_select_related = ["organization", "instance", "session"]
    date_hierarchy = "day"


@admin.register(Budget)
class BudgetAdmin(ReadOnlyAdmin):
    list_display = ["organization", "instance", "monthly_cap_usd", "action", "alerted_100_month"]
    list_filter = ["action"]
    search_fields = ["organization__name"]
    list_select_related = ["organization", "instance"]


@admin.register(MeterReport)
class MeterReportAdmin(ReadOnlyAdmin):
    list_display = ["identifier", "organization", "day", "value_cents", "reported_at", "error"]
    list_filter = ["day"]
    search_fields = ["identifier", "organization__name"]
    list_select_related = ["organization"]


@admin.register(BillingPause)
class BillingPauseAdmin(ReadOnlyAdmin):
    list_display = ["instance", "organization", "reason", "month", "created_at", "resumed_at"]
    list_filter = ["reason"]
    search_fields = ["organization__name", "instance__name"]
    list_select_related = ["organization", "instance"]
