"""The one permission table: which role may do what. Views, the API and services all ask here."""

from .models import Role

# Permissions are verbs on areas. A role's set is everything it may do.
VIEW = "view"  # see instances, sessions, backups, operations
VIEW_USAGE = "view_usage"  # see costs, usage and invoices
OPERATE = "operate"  # deploy, start, stop, restart, upgrade, back up, restore, prune
MANAGE_MEMBERS = "manage_members"  # invite, change roles, remove members
MANAGE_TOKENS = "manage_tokens"  # create and revoke API tokens
MANAGE_BILLING = "manage_billing"  # plans, checkout, portal, budgets
MANAGE_ORG = "manage_org"  # rename, delete the organization
VIEW_TRANSCRIPTS = "view_transcripts"  # read conversation transcripts

# Only an owner makes, demotes or removes an owner (accounts.services.membership_set_role).
MANAGE_OWNERS = "manage_owners"

PERMISSIONS: dict[str, frozenset[str]] = {
    Role.OWNER: frozenset(
        {
            VIEW,
            VIEW_USAGE,
            OPERATE,
            MANAGE_MEMBERS,
            MANAGE_OWNERS,
            MANAGE_TOKENS,
            MANAGE_BILLING,
            MANAGE_ORG,
            VIEW_TRANSCRIPTS,
        }
    ),
    Role.ADMIN: frozenset(
        {VIEW, VIEW_USAGE, OPERATE, MANAGE_MEMBERS, MANAGE_TOKENS, MANAGE_BILLING, VIEW_TRANSCRIPTS}
    ),
    Role.MEMBER: frozenset({VIEW, VIEW_USAGE, OPERATE, VIEW_TRANSCRIPTS}),
    Role.VIEWER: frozenset({VIEW, VIEW_USAGE}),
}

# API token scopes map onto the same permissions; a token can never exceed its scopes. The
# billing scope is for an accounting tool: usage and invoices, nothing about instances.
SCOPE_PERMISSIONS: dict[str, frozenset[str]] = {
    "read": frozenset({VIEW, VIEW_TRANSCRIPTS}),
    "operate": frozenset({VIEW, OPERATE}),
    "billing": frozenset({VIEW_USAGE}),
}
# Managing tokens over the API needs every scope: a token may not mint a stronger one.
TOKEN_ADMIN_SCOPES = frozenset({"read", "operate", "billing"})


def role_allows(role: str | None, permission: str) -> bool:
    return bool(role) and permission in PERMISSIONS.get(role, frozenset())


def scopes_allow(scopes, permission: str) -> bool:
    if permission == MANAGE_TOKENS:
        return TOKEN_ADMIN_SCOPES.issubset(set(scopes))
    return any(permission in SCOPE_PERMISSIONS.get(s, frozenset()) for s in scopes)
