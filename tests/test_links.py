"""Reversed URLs kept per process (loopsite.links.url_for): the same URL as ``reverse``, a missing route raising
``NoReverseMatch`` as it does every time it is asked for, and another URLconf or script prefix answered by its own."""

import pytest
from django.test import override_settings
from django.urls import NoReverseMatch, reverse, set_script_prefix

from loopsite.links import _reversed, url_for


@pytest.fixture(autouse=True)
def nothing_kept() -> None:
    _reversed.cache_clear()


def test_url_for__a_route__as_reverse_gives_it() -> None:
    assert url_for("queue") == reverse("queue")
    assert url_for("queue") == reverse("queue")  # kept


def test_url_for__no_such_route__raises_every_time_with_reverse_s_message() -> None:
    with pytest.raises(NoReverseMatch) as direct:
        reverse("no-such-page")

    for _ in range(2):  # the miss is kept: the second ask raises all the same
        with pytest.raises(NoReverseMatch) as kept:
            url_for("no-such-page")
        assert str(kept.value) == str(direct.value)


def test_url_for__another_script_prefix__its_own_url() -> None:
    plain = url_for("queue")
    set_script_prefix("/loop/")
    try:
        assert url_for("queue") == "/loop" + plain
    finally:
        set_script_prefix("/")


@override_settings(ROOT_URLCONF="loopsite.api_urls")
def test_url_for__another_urlconf__its_own_answer() -> None:
    with pytest.raises(NoReverseMatch):
        url_for("queue")  # the API's URLconf has no queue page
