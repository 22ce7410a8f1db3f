from django.contrib import admin

from .models import Budget, MeterReport, ModelPrice, Plan, StripeEvent, Subscription, UsageDay


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ["__str__"]


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = ["__str__"]


@admin.register(StripeEvent)
class StripeEventAdmin(admin.ModelAdmin):
    list_display = ["__str__"]


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    list_display = ["__str__"]


@admin.register(UsageDay)
class UsageDayAdmin(admin.ModelAdmin):
    list_display = ["__str__"]


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    list_display = ["__str__"]


@admin.register(MeterReport)
class MeterReportAdmin(admin.ModelAdmin):
    list_display = ["__str__"]
