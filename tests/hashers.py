"""The password hasher of the test session (tests/conftest.py sets it).

Production's PBKDF2 at one iteration instead of a million: the same algorithm and format (``pbkdf2_sha256$1$...``),
so a server the tests start in a process of its own, with the production hashers, still verifies these passwords
(the iteration count is read from the stored hash). At a million iterations each test user's password took about
half a second on the development machine, and the fixtures make hundreds of users a run.
"""

from django.contrib.auth.hashers import PBKDF2PasswordHasher


class OneIterationPBKDF2(PBKDF2PasswordHasher):
    iterations = 1
