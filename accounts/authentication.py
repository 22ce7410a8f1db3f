"""Bearer-token authentication for the REST API (organization API tokens)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from .client_ip import client_ip
from .services import api_token_authenticate


class TokenUser:
    """The principal behind an API token: authenticated, but not a person and never staff."""

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_superuser = False
    is_active = True
    pk = None
    id = None
    email = ""

    def __init__(self, token):
        self.token = token

    def __str__(self):
        return f"token:{self.token.name}"


class ApiTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode(errors="replace")
        if not header:
            return None
        parts = header.split()
        if len(parts) != 2 or parts[0] != self.keyword:
            raise exceptions.AuthenticationFailed("Use the header: Authorization: Bearer <token>.")
        token = api_token_authenticate(parts[1], ip=client_ip(request))
        if token is None:
            raise exceptions.AuthenticationFailed("This token is invalid, expired or revoked.")
        return TokenUser(token), token

    def authenticate_header(self, request):
        return self.keyword


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = ApiTokenAuthentication
    name = "ApiToken"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "An organization API token."}
