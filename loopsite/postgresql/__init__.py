"""Django's PostgreSQL backend with a pool whose connection check costs no round trip (``base.py``)."""
