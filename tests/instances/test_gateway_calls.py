"""The web tier's calls into a tenant's gateway are bounded per organization and size-capped."""

import pytest

from instances import gateway_calls


def test_an_organization_holds_at_most_its_slots_and_others_are_unaffected(settings):
    settings.FLEET_GATEWAY_CALLS_PER_ORG = 2
    with gateway_calls.slot(1), gateway_calls.slot(1):
        with pytest.raises(gateway_calls.GatewayBusy), gateway_calls.slot(1):
            pass
        with gateway_calls.slot(2):  # another tenant is served
            pass
    with gateway_calls.slot(1):  # released again
        pass


def test_a_slot_is_released_when_the_call_fails(settings):
    settings.FLEET_GATEWAY_CALLS_PER_ORG = 1
    with pytest.raises(RuntimeError), gateway_calls.slot(7):
        raise RuntimeError("the gateway hung up")
    with gateway_calls.slot(7):
        pass


def test_output_beyond_the_limit_is_cut_and_says_so(settings):
    settings.FLEET_GATEWAY_MAX_OUTPUT = 10
    assert gateway_calls.cap("short") == "short"
    cut = gateway_calls.cap("x" * 100 + "END")
    assert cut.startswith("xxxxxxxEND") and "cut" in cut
