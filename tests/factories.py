"""factory_boy factories shared by every test package."""

import factory
from django.utils import timezone

from accounts.models import Membership, Organization, Role, User


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("email",)
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    date_joined = factory.LazyFunction(timezone.now)

    @factory.post_generation
    def password(obj, create, extracted, **kwargs):
        obj.set_password(extracted or "correct-horse-battery")
        if create:
            obj.save(update_fields=["password"])


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organization

    name = factory.Sequence(lambda n: f"Org {n}")
    slug = factory.Sequence(lambda n: f"org-{n}")
    kind = Organization.Kind.AGENCY


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    organization = factory.SubFactory(OrganizationFactory)
    role = Role.OWNER


def verified(user: User) -> User:
    """Mark the user's email verified in allauth, as a confirmed signup would."""
    from allauth.account.models import EmailAddress

    EmailAddress.objects.update_or_create(
        user=user, email=user.email, defaults={"verified": True, "primary": True}
    )
    return user


# --- instances ------------------------------------------------------------------------------


class HostFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "instances.Host"
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"test-host-{n}")
    base_url = "unix:///nonexistent.sock"


class InstanceFactory(factory.django.DjangoModelFactory):
    """An instance row as a finished deploy leaves it (running, healthy), with no container:
    tests that need a gateway deploy through the services and a real or fake runtime."""

    class Meta:
        model = "instances.Instance"

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"bot-{n}")
    openclaw_version = "2026.9.6"
    status = "running"
    desired_state = "running"
    health = factory.LazyAttribute(lambda i: "healthy" if i.status == "running" else "unknown")
    running_since = factory.LazyAttribute(
        lambda i: timezone.now() if i.status == "running" else None
    )
    provider = "custom"
    model_name = "mock-1"
    gateway_token = "gw-test-token"
    memory_mb = 2048
    cpus = 1

    class Params:
        # On the control plane's own engine ("local" host), as the dashboard's deploys are.
        local = factory.Trait(host=factory.LazyFunction(lambda: _local_host()))


def _local_host():
    from instances import placement

    return placement.ensure_local_host()


class OperationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "instances.Operation"

    instance = factory.SubFactory(InstanceFactory)
    organization = factory.LazyAttribute(lambda o: o.instance.organization)
    kind = "deploy"
    state = "succeeded"
    started_at = factory.LazyFunction(timezone.now)
    finished_at = factory.LazyAttribute(
        lambda o: None if o.state in ("queued", "running") else timezone.now()
    )


# --- sessions and backups ---------------------------------------------------------------------


class SessionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "sessions_mgmt.Session"

    instance = factory.SubFactory(InstanceFactory)
    organization = factory.LazyAttribute(lambda s: s.instance.organization)
    session_key = factory.Sequence(lambda n: f"agent:main:telegram:dm:{n}")
    channel = "telegram"
    model = "mock-1"
    started_at = factory.LazyFunction(timezone.now)
    last_activity_at = factory.LazyFunction(timezone.now)


class BackupFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "sessions_mgmt.Backup"

    instance = factory.SubFactory(InstanceFactory)
    organization = factory.LazyAttribute(lambda b: b.instance.organization)
    kind = "manual"
    state = "succeeded"
    size_bytes = 1234
    sha256 = "0" * 64
    storage_name = factory.Sequence(lambda n: f"backups/test/{n}.tar.zst")
    openclaw_version = factory.LazyAttribute(lambda b: b.instance.openclaw_version)
    finished_at = factory.LazyAttribute(
        lambda b: timezone.now() if b.state == "succeeded" else None
    )
