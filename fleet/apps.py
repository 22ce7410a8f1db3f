"""django.contrib.admin with the staff site as its default site, so every `@admin.register`
(and `admin.site`) in the apps lands on fleet.admin.FleetAdminSite without naming it."""

from django.contrib.admin.apps import AdminConfig


class FleetAdminConfig(AdminConfig):
    default_site = "fleet.admin.FleetAdminSite"
