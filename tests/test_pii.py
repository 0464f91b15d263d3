import pytest

from workbench.data.pii import iban_valid, luhn_valid, redact


@pytest.mark.parametrize(
    "text, kind",
    [
        ("write to hannelore.brecht@example.com today", "email"),
        ("call +44 20 7946 0958 now", "phone"),
        ("call (555) 010-2368 now", "phone"),
        ("call 0161 496 0311 now", "phone"),
        ("call +1-555-010-2368 now", "phone"),
        ("card 4111 1111 1111 1111 on file", "card"),
        ("card 5555-5555-5555-4444 on file", "card"),
        ("amex 378282246310005 on file", "card"),
        ("IBAN GB82 WEST 1234 5698 7654 32 for refunds", "iban"),
        ("IBAN DE89370400440532013000 for refunds", "iban"),
        ("SSN 078-05-1120 on the form", "national_id"),
        ("NI number QQ 12 34 56 C on the form", "national_id"),
    ],
)
def test_each_kind_is_replaced_by_its_placeholder(text, kind):
    redacted, counts = redact(text)
    assert counts == {kind: 1}
    assert f"[{kind.upper()}]" in redacted
    assert redacted.split()[0] == text.split()[0] and redacted.split()[-1] == text.split()[-1]


@pytest.mark.parametrize(
    "text",
    [
        "order number 4111 1111 1111 1112",  # fails Luhn
        "hub serial 7392 0145 8862 3310",  # fails Luhn, and its tail is not a phone number
        "IBAN GB82 WEST 1234 5698 7654 33",  # fails mod-97
        "The Skylark S2 costs €1,240 and shipped on 2019-03-04 with Canopy OS 4.7.2.",
        "RMA-2026-00417, part MG-SP-021, support 07:30–18:00, 2,900 growers, 99.9% uptime, 1.2 km",
    ],
)
def test_lookalikes_are_left_alone(text):
    assert redact(text) == (text, {})


def test_only_requested_kinds_are_redacted():
    text = "mail a@example.com card 4111111111111111"
    redacted, counts = redact(text, ["card"])
    assert redacted == "mail a@example.com card [CARD]" and counts == {"card": 1}


def test_checksums():
    assert luhn_valid("4111 1111 1111 1111") and not luhn_valid("4111 1111 1111 1112")
    assert not luhn_valid("0000 0000 0")  # too short to be a card
    assert iban_valid("GB82 WEST 1234 5698 7654 32") and not iban_valid("GB82 WEST 1234 5698 7654 23")
