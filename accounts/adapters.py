from allauth.account.adapter import DefaultAccountAdapter
from django.core.exceptions import PermissionDenied

from .client_ip import client_ip


class AccountAdapter(DefaultAccountAdapter):
    """Signup creates the person's personal organization in the same request; the client address
    for allauth's rate limits follows the project's trusted-proxy rule (accounts.client_ip)."""

    def get_client_ip(self, request) -> str:
        ip = client_ip(request)
        if not ip:
            raise PermissionDenied("Unable to determine client IP address")
        return ip

    def save_user(self, request, user, form, commit=True):
        user = super().save_user(request, user, form, commit=commit)
        if commit:
            from .services import personal_organization_ensure

            personal_organization_ensure(user=user)
        return user
