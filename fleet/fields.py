"""Encryption at rest for secrets: one Fernet wrapper and one model field."""

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models


@lru_cache(maxsize=1)
def _fernet() -> MultiFernet:
    return MultiFernet([Fernet(k.encode()) for k in settings.FIELD_ENCRYPTION_KEYS])


def encrypt_bytes(data: bytes) -> bytes:
    return _fernet().encrypt(data)


def decrypt_bytes(token: bytes) -> bytes:
    return _fernet().decrypt(token)


class EncryptedTextField(models.TextField):
    """Stores Fernet ciphertext; Python code sees plain text. Never searchable, never logged."""

    description = "Text encrypted at rest with Fernet"

    def from_db_value(self, value, expression, connection):
        if value in (None, ""):
            return value
        try:
            return decrypt_bytes(value.encode()).decode()
        except InvalidToken as exc:  # a key was rotated away: fail loudly, never return junk
            raise ValueError(f"cannot decrypt {self.model.__name__}.{self.name}") from exc

    def get_prep_value(self, value):
        if value in (None, ""):
            return value
        return encrypt_bytes(str(value).encode()).decode()

    def value_to_string(self, obj):  # dumpdata shows ciphertext only
        return self.get_prep_value(self.value_from_object(obj))
