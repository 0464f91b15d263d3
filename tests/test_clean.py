from workbench.data.clean import find_boilerplate, repair_text, strip_lines


def test_mojibake_is_repaired_and_reported():
    broken = "The cafÃ© didnâ€™t charge â‚¬1,240 Ã¼ber alles"
    text, had_mojibake = repair_text(broken)
    assert text == "The café didn’t charge €1,240 über alles"
    assert had_mojibake
    assert repair_text("Plain text, nothing odd.") == ("Plain text, nothing odd.", False)


def test_unicode_is_nfc_and_whitespace_tidy():
    text, _ = repair_text("Cafe\u0301  menu\r\n\r\n\r\n\r\nNext\u00a0line  ")
    assert text == "Café menu\n\nNext line"


def test_boilerplate_needs_both_count_and_share_and_spares_headings_and_table_rules():
    footer = "Exported from Helpdesk — internal use only"
    texts = [f"# Title\n|---|---|\nBody {i}\n{footer}" for i in range(10)] + [f"Other {i}" for i in range(10)]
    assert find_boilerplate(texts, min_docs=3, min_fraction=0.6) == {}  # in 10 of 20 documents: share 0.5
    assert find_boilerplate(texts, min_docs=11, min_fraction=0.1) == {}
    found = find_boilerplate(texts, min_docs=3, min_fraction=0.5)
    assert list(found) == ["exported from helpdesk — internal use only"]
    cleaned, removed = strip_lines(texts[0], found)
    assert cleaned == "# Title\n|---|---|\nBody 0" and removed == 1
    assert find_boilerplate(texts[:2], min_docs=3, min_fraction=0.1) == {}
