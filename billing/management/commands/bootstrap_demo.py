"""Create (or refresh) the demo staff user `make run` prints, with a ready-to-deploy workspace.

It lives in billing because it composes accounts (the user) and billing (a comped plan), and
billing is the higher of the two in the app chain (docs/architecture.md)."""

import secrets

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.models import User
from accounts.services import personal_organization_ensure

DEMO_EMAIL = "admin@clawfleet.local"


class Command(BaseCommand):
    help = "Create the demo staff user and print how to log in (development only)."

    @transaction.atomic
    def handle(self, *args, **options):
        from allauth.account.models import EmailAddress

        password = settings.DEMO_ADMIN_PASSWORD or secrets.token_urlsafe(12)
        user, created = User.objects.get_or_create(
            email=DEMO_EMAIL, defaults={"is_staff": True, "is_superuser": True}
        )
        user.is_staff = user.is_superuser = True
        user.set_password(password)  # a fresh password on every run: nothing to remember
        user.save()
        EmailAddress.objects.update_or_create(
            user=user, email=DEMO_EMAIL, defaults={"verified": True, "primary": True}
        )
        org = personal_organization_ensure(user=user)
        self._comp_subscription(org)
        self.stdout.write(
            self.style.SUCCESS(
                f"\n  Demo admin: {DEMO_EMAIL}  password: {password}\n"
                "  Dashboard: http://127.0.0.1:8000/   Staff admin: http://127.0.0.1:8000/admin/\n"
                "  The staff admin needs an authenticator app (TOTP): the first sign-in to\n"
                "  /admin/ asks for the password again, shows a QR code to scan with any TOTP\n"
                "  app, then a code from it (FLEET_STAFF_MFA_REQUIRED=false skips this, DEBUG\n"
                "  on only).\n"
            )
        )

    def _comp_subscription(self, org):
        """The demo workspace gets a complimentary subscription so it can deploy at once."""
        from accounts.services import SYSTEM

        from ...models import Plan
        from ...services.subscriptions import subscription_comp

        plan = Plan.objects.filter(is_active=True).order_by("-max_instances").first()
        if plan is not None:
            subscription_comp(actor=SYSTEM, organization=org, plan=plan)
