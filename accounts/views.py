"""Dashboard views for organizations, members, invitations, API tokens and the audit log."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from . import roles, selectors, services
from .forms import (
    ApiTokenForm,
    InviteForm,
    OrganizationForm,
    RenameOrganizationForm,
    RoleForm,
    apply_service_errors,
)
from .middleware import SESSION_KEY
from .models import ApiToken, Invitation, Membership
from .services import Actor


def home(request):
    if request.user.is_authenticated:
        return redirect("dashboard")
    return render(request, "accounts/home.html")


def current_membership(request, permission: str = roles.VIEW) -> Membership:
    """The caller's membership in the current organization, checked against the role table."""
    membership = request.membership
    if not membership:
        raise Http404("No organization")
    if not roles.role_allows(membership.role, permission):
        raise PermissionDenied("Your role in this organization does not allow that.")
    return membership


@login_required
@require_POST
def org_switch(request):
    org_id = request.POST.get("organization", "")
    membership = (
        Membership.objects.filter(user=request.user, organization_id=org_id).first()
        if org_id.isdigit()
        else None
    )
    if membership is None:
        raise Http404("No such organization")
    request.session[SESSION_KEY] = membership.organization_id
    wanted = request.POST.get("next", "")
    # Only a path on this site: never an open redirect to somebody else's page.
    local = wanted.startswith("/") and url_has_allowed_host_and_scheme(
        wanted, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return redirect(wanted if local else "dashboard")


@login_required
def org_create(request):
    form = OrganizationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            org = services.organization_create(
                actor=Actor.from_request(request),
                owner=request.user,
                name=form.cleaned_data["name"],
                slug=form.cleaned_data["slug"] or None,
                kind="agency",
            )
        except ValidationError as exc:
            apply_service_errors(form, exc)
        else:
            request.session[SESSION_KEY] = org.id
            messages.success(request, f"{org.name} is ready. Invite your team or deploy.")
            return redirect("org_settings")
    return render(request, "accounts/org_create.html", {"form": form})


@login_required
def org_settings(request):
    membership = current_membership(request)
    org = membership.organization
    can_manage = roles.role_allows(membership.role, roles.MANAGE_MEMBERS)
    rename_form = RenameOrganizationForm(initial={"name": org.name})
    invite_form = InviteForm()
    if request.method == "POST":
        current_membership(request, roles.MANAGE_MEMBERS)
        actor = Actor.from_request(request)
        if "invite" in request.POST:
            invite_form = InviteForm(request.POST)
            if invite_form.is_valid():
                try:
                    services.invitation_create(
                        actor=actor,
                        organization=org,
                        email=invite_form.cleaned_data["email"],
                        role=invite_form.cleaned_data["role"],
                    )
                except ValidationError as exc:
                    apply_service_errors(invite_form, exc)
                else:
                    messages.success(
                        request, f"Invitation sent to {invite_form.cleaned_data['email']}."
                    )
                    return redirect("org_settings")
        elif "rename" in request.POST:
            current_membership(request, roles.MANAGE_ORG)
            rename_form = RenameOrganizationForm(request.POST)
            if rename_form.is_valid():
                services.organization_rename(
                    actor=actor, organization=org, name=rename_form.cleaned_data["name"]
                )
                messages.success(request, "Organization renamed.")
                return redirect("org_settings")
    return render(
        request,
        "accounts/org_settings.html",
        {
            "org": org,
            "membership": membership,
            "can_manage": can_manage,
            "members": selectors.members_for(organization=org),
            "invitations": selectors.pending_invitations_for(organization=org),
            "invite_form": invite_form,
            "rename_form": rename_form,
            "roles": RoleForm.base_fields["role"].choices,
        },
    )


@login_required
@require_POST
def member_update(request, membership_id: int):
    membership = current_membership(request, roles.MANAGE_MEMBERS)
    target = get_object_or_404(Membership, pk=membership_id, organization=membership.organization)
    actor = Actor.from_request(request)
    try:
        if "remove" in request.POST:
            services.membership_remove(actor=actor, membership=target)
            messages.success(request, f"{target.user.email} was removed.")
        else:
            form = RoleForm(request.POST)
            if not form.is_valid():
                raise ValidationError("Choose a valid role.")
            services.membership_set_role(
                actor=actor, membership=target, role=form.cleaned_data["role"]
            )
            messages.success(request, f"{target.user.email} is now {target.get_role_display()}.")
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    except PermissionDenied as exc:  # e.g. an admin touching an owner: say why, on the page
        messages.error(request, str(exc))
    return redirect("org_settings")


@login_required
@require_POST
def invitation_revoke(request, invitation_id: int):
    membership = current_membership(request, roles.MANAGE_MEMBERS)
    invitation = get_object_or_404(
        Invitation, pk=invitation_id, organization=membership.organization
    )
    services.invitation_revoke(actor=Actor.from_request(request), invitation=invitation)
    messages.success(request, f"Invitation to {invitation.email} revoked.")
    return redirect("org_settings")


def invitation_accept(request, secret: str):
    invitation = services.invitation_for_secret(secret)
    if invitation is None or not invitation.is_pending:
        return render(request, "accounts/invitation_invalid.html", status=404)
    if not request.user.is_authenticated:
        request.session["pending_invitation"] = secret
        return render(request, "accounts/invitation_accept.html", {"invitation": invitation})
    if request.method == "POST":
        try:
            membership = services.invitation_accept(
                actor=Actor.from_request(request), user=request.user, secret=secret
            )
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            request.session[SESSION_KEY] = membership.organization_id
            messages.success(request, f"Welcome to {membership.organization.name}.")
            return redirect("dashboard")
    return render(request, "accounts/invitation_accept.html", {"invitation": invitation})


@never_cache  # the response may carry a new token's secret: never store it in a cache
@login_required
def api_tokens(request):
    membership = current_membership(request, roles.MANAGE_TOKENS)
    org = membership.organization
    form = ApiTokenForm(request.POST or None)
    new_secret = None
    if request.method == "POST" and form.is_valid():
        try:
            _, new_secret = services.api_token_create(
                actor=Actor.from_request(request),
                organization=org,
                name=form.cleaned_data["name"],
                scopes=form.cleaned_data["scopes"],
                expires_at=form.cleaned_data["expires_at"],
            )
        except ValidationError as exc:
            apply_service_errors(form, exc)
        else:
            form = ApiTokenForm()
    return render(
        request,
        "accounts/api_tokens.html",
        {
            "form": form,
            "tokens": selectors.api_tokens_for(organization=org),
            "new_secret": new_secret,
        },
    )


@login_required
@require_POST
def api_token_revoke(request, token_id):
    membership = current_membership(request, roles.MANAGE_TOKENS)
    token = get_object_or_404(ApiToken, pk=token_id, organization=membership.organization)
    services.api_token_revoke(actor=Actor.from_request(request), token=token)
    messages.success(request, f"Token “{token.name}” revoked. Clients using it now get 401.")
    return redirect("api_tokens")


@login_required
def audit_log(request):
    membership = current_membership(request, roles.MANAGE_MEMBERS)
    events = selectors.audit_events_for(organization=membership.organization)
    page = Paginator(events, 50).get_page(request.GET.get("page"))
    return render(request, "accounts/audit_log.html", {"page": page})
