from .models import Membership


def organizations(request):
    user = getattr(request, "user", None)
    if not user or not user.is_authenticated:
        return {}
    membership = getattr(request, "membership", None)
    membership = membership if membership else None
    return {
        "current_membership": membership,
        "current_org": membership.organization if membership else None,
        "my_memberships": Membership.objects.select_related("organization")
        .filter(user=user)
        .order_by("organization__name"),
    }
