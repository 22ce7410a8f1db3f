"""Staff admin for people, organizations, invitations, API tokens and the audit log.

- The audit log is read-only and append-only: no add, change or delete here (AuditEvent.save
  refuses updates too). Filters: action, organization (by slug, typed), target type, date.
- Organizations: renamed through accounts.services.organization_rename (audited); memberships are
  shown, changed by the customer's owners (their services audit it), not edited here.
- Invitations and API tokens: view-only, with revoke actions calling the services.

Staff roles (docs/admin.md): the "Support" group (created by accounts/migrations/0002) has view
permissions on instances, sessions, operations, backups and events plus
"sessions_mgmt.view_transcript", and no change permission.
"""

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.core.exceptions import ValidationError
from django.db.models import Count, IntegerField, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils.html import format_html

from . import services
from .models import ApiToken, AuditEvent, Invitation, Membership, Organization, User

SUPPORT_GROUP = "Support"


def admin_actor(request) -> services.Actor:
    """The staff member acting, with the client IP as the rest of the product reads it."""
    return services.Actor.from_request(request, via="admin")


class OrganizationSlugFilter(admin.SimpleListFilter):
    """Filter by an organization typed as its slug (a list of every organization would not fit).

    Works for any model with an `organization` foreign key; links can also use
    ?organization__id__exact=<id>."""

    title = "organization (slug)"
    parameter_name = "org"
    template = "admin/input_filter.html"
    placeholder = "e.g. alice-co"
    field_path = "organization__slug"

    def lookups(self, request, model_admin):
        return ()

    def has_output(self):
        return True

    def queryset(self, request, queryset):
        value = (self.value() or "").strip()
        if value:
            return queryset.filter(**{self.field_path: value})
        return queryset

    def choices(self, changelist):
        other = []
        for key, values in changelist.get_filters_params().items():
            if key == self.parameter_name:
                continue
            for value in values if isinstance(values, list) else [values]:
                other.append((key, value))
        yield {
            "selected": self.value() is not None,
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "query_parts": other,
            "display": "All",
        }


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ["email"]
    list_display = ["email", "first_name", "last_name", "is_staff", "is_active", "date_joined"]
    list_filter = ["is_staff", "is_superuser", "is_active", "groups"]
    search_fields = ["email", "first_name", "last_name"]
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name")}),
        (
            "Permissions",
            {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")},
        ),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)


class MembershipInline(admin.TabularInline):
    """Shown, not edited: roles change through the customer's owners (audited services)."""

    model = Membership
    extra = 0
    fields = ["user", "role", "created_at"]
    readonly_fields = ["user", "role", "created_at"]

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user")


def _count_of(model, **filters):
    """A correlated COUNT(*) subquery (no join fan-out between two counts)."""
    qs = (
        model.objects.filter(organization=OuterRef("pk"), **filters)
        .order_by()
        .values("organization")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(qs, output_field=IntegerField()), 0)


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "slug",
        "kind",
        "plan",
        "subscription_status",
        "member_count",
        "instance_count",
        "created_at",
    ]
    list_filter = ["kind", "subscription__status", "subscription__plan"]
    search_fields = ["name", "slug", "billing_email", "memberships__user__email"]
    list_select_related = ["subscription", "subscription__plan"]
    inlines = [MembershipInline]
    fields = ["name", "slug", "kind", "billing_email", "created_at", "links"]
    readonly_fields = ["slug", "kind", "billing_email", "created_at", "links"]

    def has_add_permission(self, request):
        return False  # organizations are created at signup (accounts.services)

    def has_delete_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        # Instances are counted through the reverse relation (accounts imports no app above it:
        # instances point at organizations, not the other way round).
        return (
            super()
            .get_queryset(request)
            .annotate(
                member_total=_count_of(Membership),
                instance_total=Count(
                    "instances", filter=~Q(instances__status="purged"), distinct=True
                ),
            )
        )

    def _subscription(self, obj):
        try:
            return obj.subscription
        except Exception:  # noqa: BLE001 - RelatedObjectDoesNotExist: never subscribed
            return None

    @admin.display(description="plan", ordering="subscription__plan__name")
    def plan(self, obj):
        sub = self._subscription(obj)
        return sub.plan.name if sub and sub.plan else "—"

    @admin.display(description="subscription", ordering="subscription__status")
    def subscription_status(self, obj):
        sub = self._subscription(obj)
        return sub.get_status_display() if sub else "—"

    @admin.display(description="members", ordering="member_total")
    def member_count(self, obj):
        return obj.member_total

    @admin.display(description="instances", ordering="instance_total")
    def instance_count(self, obj):
        url = reverse("admin:instances_instance_changelist")
        return format_html(
            '<a href="{}?organization__id__exact={}">{}</a>', url, obj.pk, obj.instance_total or 0
        )

    @admin.display(description="see also")
    def links(self, obj):
        if obj.pk is None:
            return "—"
        targets = [
            ("instances", "admin:instances_instance_changelist"),
            ("sessions", "admin:sessions_mgmt_session_changelist"),
            ("operations", "admin:instances_operation_changelist"),
            ("audit log", "admin:accounts_auditevent_changelist"),
        ]
        return format_html(
            " · ".join(['<a href="{}?organization__id__exact={}">{}</a>'] * len(targets)),
            *[part for label, name in targets for part in (reverse(name), obj.pk, label)],
        )

    def save_model(self, request, obj, form, change):
        """Only the name is editable, and it changes through the audited service."""
        if change and "name" in form.changed_data:
            fresh = Organization.objects.get(pk=obj.pk)
            try:
                services.organization_rename(
                    actor=admin_actor(request), organization=fresh, name=obj.name
                )
            except ValidationError as exc:
                messages.error(request, " ".join(exc.messages))

    def save_formset(self, request, form, formset, change):
        # Memberships are read-only here: nothing to save, nothing to log.
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by services and workers only: staff look, never edit. (The one definition:
    billing's, instances' and sessions' admins import it from here, the lowest app.)"""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Membership)
class MembershipAdmin(ReadOnlyAdmin):
    list_display = ["user", "organization", "role", "created_at"]
    list_filter = ["role"]
    search_fields = ["user__email", "organization__name", "organization__slug"]
    list_select_related = ["user", "organization"]


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = [
        "email",
        "organization",
        "role",
        "created_at",
        "expires_at",
        "accepted_at",
        "revoked_at",
    ]
    list_filter = ["role"]
    search_fields = ["email", "organization__name"]
    exclude = ["token_hash"]
    list_select_related = ["organization"]
    actions = ["revoke_invitations"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_revoke_permission(self, request):
        return request.user.has_perm("accounts.change_invitation")

    @admin.action(description="Revoke selected invitations", permissions=["revoke"])
    def revoke_invitations(self, request, queryset):
        n = 0
        for invitation in queryset.select_related("organization"):
            if invitation.is_pending:
                services.invitation_revoke(actor=admin_actor(request), invitation=invitation)
                n += 1
        messages.success(request, f"Revoked {n} pending invitation(s).")


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "display",
        "organization",
        "scopes",
        "created_at",
        "expires_at",
        "revoked_at",
        "last_used_at",
    ]
    list_filter = ["revoked_at"]
    search_fields = ["name", "lookup", "organization__name", "organization__slug"]
    exclude = ["token_hash"]
    list_select_related = ["organization"]
    actions = ["revoke_tokens"]

    def has_add_permission(self, request):
        return False  # tokens are created by their organization, shown once

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_revoke_permission(self, request):
        return request.user.has_perm("accounts.change_apitoken")

    @admin.action(description="Revoke selected API tokens", permissions=["revoke"])
    def revoke_tokens(self, request, queryset):
        n = 0
        for token in queryset.select_related("organization").filter(revoked_at__isnull=True):
            services.api_token_revoke(actor=admin_actor(request), token=token)
            n += 1
        messages.success(request, f"Revoked {n} API token(s).")


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only and append-only."""

    show_facets = admin.ShowFacets.NEVER  # a big table: no count per filter choice

    list_display = ["created_at", "action", "organization", "actor", "target_repr", "ip"]
    list_filter = [OrganizationSlugFilter, "action", "target_type", "created_at"]
    search_fields = ["action", "target_repr", "target_id", "actor__email", "organization__name"]
    date_hierarchy = "created_at"
    list_select_related = ["organization", "actor"]
    fields = [
        "created_at",
        "action",
        "organization",
        "actor",
        "actor_token",
        "target_type",
        "target_id",
        "target_repr",
        "data",
        "ip",
    ]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
