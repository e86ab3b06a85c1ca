import pytest


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # Each persona has a password; the real hasher's cost is not what these tests are about.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
