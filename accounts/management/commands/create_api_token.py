"""Mint an organization API token from the command line (operators, CI, first setup).

    python manage.py create_api_token --org acme --name "CI deploys" --scopes read,operate
    python manage.py create_api_token --org acme --name ci --scopes read --owner ops@acme.test

With --owner the user (unusable password, verified email) and the organization are created
when missing. The token is printed alone on the last line, so `| tail -n 1` captures it.
"""

from __future__ import annotations

from datetime import timedelta

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from accounts import services
from accounts.models import ApiToken, Membership, Organization, Role, User

VALID_SCOPES = tuple(ApiToken.Scope.values)


def _messages(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
    return " ".join(exc.messages)


class Command(BaseCommand):
    help = "Create an API token for an organization and print it (shown once)."

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="The organization's slug.")
        parser.add_argument("--name", required=True, help="What uses the token.")
        parser.add_argument(
            "--scopes",
            required=True,
            help=f"Comma-separated, from: {', '.join(VALID_SCOPES)}.",
        )
        parser.add_argument(
            "--owner",
            help="Email of the owner: the user and the organization are created when missing.",
        )
        parser.add_argument("--org-name", help="Name of a new organization (default: the slug).")
        parser.add_argument(
            "--expires-days", type=int, help="Expire the token after this many days."
        )

    def handle(self, *args, **options):
        scopes = self._scopes(options["scopes"])
        expires_at = None
        if options["expires_days"] is not None:
            if options["expires_days"] < 1:
                raise CommandError("--expires-days must be 1 or more.")
            expires_at = timezone.now() + timedelta(days=options["expires_days"])
        slug = (options["org"] or "").strip()
        if not slug:
            raise CommandError("--org must not be empty.")
        try:
            with transaction.atomic():
                owner = self._owner(options["owner"]) if options["owner"] else None
                actor = services.Actor(user=owner, via="cli")
                org = self._organization(slug, owner, options["org_name"], actor)
                token, secret = services.api_token_create(
                    actor=actor,
                    organization=org,
                    name=options["name"],
                    scopes=scopes,
                    expires_at=expires_at,
                )
        except ValidationError as exc:
            raise CommandError(_messages(exc)) from exc
        self.stdout.write(
            f"Created token {token.display} “{token.name}” for {org.slug} "
            f"with scopes {', '.join(token.scopes)}. It is shown once; store it now:"
        )
        self.stdout.write(secret)

    def _scopes(self, raw: str) -> list[str]:
        scopes = [s.strip() for s in (raw or "").split(",") if s.strip()]
        unknown = sorted(set(scopes) - set(VALID_SCOPES))
        if not scopes or unknown:
            what = f"Unknown scope(s): {', '.join(unknown)}. " if unknown else ""
            raise CommandError(f"{what}Choose one or more of: {', '.join(VALID_SCOPES)}.")
        return sorted(set(scopes))

    def _owner(self, email: str) -> User:
        from allauth.account.models import EmailAddress

        email = email.strip().lower()
        try:
            validate_email(email)
        except ValidationError as exc:
            raise CommandError(f"--owner: “{email}” is not a valid email address.") from exc
        user = User.objects.filter(email__iexact=email).first()
        if user is None:
            user = User.objects.create_user(email=email, password=None)  # unusable password
            self.stdout.write(f"Created user {email} (no password: they sign in by reset).")
        EmailAddress.objects.update_or_create(
            user=user, email=user.email, defaults={"verified": True, "primary": True}
        )
        return user

    def _organization(self, slug, owner, name, actor) -> Organization:
        org = Organization.objects.filter(slug=slug).first()
        if org is None:
            if owner is None:
                raise CommandError(
                    f"No organization with slug “{slug}”. Pass --owner EMAIL to create it."
                )
            if slugify(slug) != slug:
                raise CommandError(
                    f"“{slug}” is not a valid slug: use lowercase letters, digits and hyphens."
                )
            org = services.organization_create(
                actor=actor, owner=owner, name=name or slug, slug=slug, kind="agency"
            )
            self.stdout.write(f"Created organization {org.slug} owned by {owner.email}.")
            return org
        if (
            owner is not None
            and not Membership.objects.filter(organization=org, user=owner).exists()
        ):
            raise CommandError(
                f"{owner.email} is not a member of {slug}; leave out --owner to mint a token "
                "for an existing organization."
            )
        if owner is not None:
            role = Membership.objects.get(organization=org, user=owner).role
            if role not in (Role.OWNER, Role.ADMIN):
                raise CommandError(f"{owner.email} is a {role} of {slug}, not an owner or admin.")
        return org
