import pytest


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # Sign-ins are what these tests are about, not the hasher's cost.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
