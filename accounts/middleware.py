"""Resolves the organization a signed-in person is working in (the organization switcher)."""

from django.utils.functional import SimpleLazyObject

from .models import Membership

SESSION_KEY = "current_org_id"


def _membership(request):
    user = request.user
    if not user.is_authenticated:
        return None
    memberships = Membership.objects.select_related("organization").filter(user=user)
    wanted = request.session.get(SESSION_KEY)
    if wanted:
        chosen = memberships.filter(organization_id=wanted).first()
        if chosen:
            return chosen
    return memberships.order_by("organization__kind", "organization_id").first()


class CurrentOrganizationMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.membership = SimpleLazyObject(lambda: _membership(request))
        return self.get_response(request)
