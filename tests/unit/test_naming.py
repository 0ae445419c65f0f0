from datetime import date

import pytest

from microfair.naming import check_name, suggest_name


def test_guide_example_is_valid_and_tokenised():
    r = check_name("2023-01-15_TNT_MicroAlgue_ALebon_Controle_RAW_v01.czi")
    assert r.valid, r.violations
    t = r.tokens
    assert (t.date, t.project, t.creator, t.condition, t.kind, t.version, t.extension) == (
        date(2023, 1, 15), "TNT", "ALebon", "Controle", "RAW", 1, ".czi")
    assert t.study == "MicroAlgue"


def test_compound_extension_and_processed_type():
    r = check_name("2024-03-01_AB_Cre_Cond_processed_v12.ome.tiff")
    assert r.valid and r.tokens.extension == ".ome.tiff" and r.tokens.version == 12


@pytest.mark.parametrize("name, fragment", [
    ("2023-01-15_TNT_ALebon Controle_RAW_v01.czi", "spaces"),
    ("2023-01-15_TNT_ALébon_Contrôle_RAW_v01.czi", "accents"),
    ("2023-01-15_TNT_ALebon_Controle(2)_RAW_v01.czi", "special characters"),
    ("2023-01-15_tnt_ALebon_Controle_RAW_v01.czi", "project acronym"),
    ("2023-01-15_TNT_ALebon_Controle_raw_v01.czi", "type"),
    ("2023-01-15_TNT_ALebon_Controle_RAW_v1.czi", "version"),
    ("2023-01-15_TNT_ALebon_RAW_v01.czi", "expected at least 6"),
    ("2023-01-15_TNT_" + "A" * 120 + "_Controle_RAW_v01.czi", "under 128"),
])
def test_each_violation_is_named_and_a_valid_name_suggested(name, fragment):
    r = check_name(name)
    assert not r.valid
    assert any(fragment in v for v in r.violations), r.violations
    assert r.suggestion and check_name(r.suggestion).valid, r.suggestion


def test_suggestion_keeps_known_fields():
    s = suggest_name("2023-01-15 TNT ALébon Contrôle raw v3.czi")
    assert s == "2023-01-15_TNT_ALebon_Controle_RAW_v03.czi"


def test_every_violation_is_listed_at_once():
    r = check_name("mon image été (2).czi")
    assert len(r.violations) >= 4


@pytest.mark.parametrize("name", ["2024-02-31_TNT_ALebon_Controle_RAW_v01.czi", "2023-13-45_TNT_ALebon_Controle_RAW_v01.czi",
                                  "20240231_TNT_ALebon_Controle_RAW_v01.czi"])
def test_an_impossible_date_gives_no_suggestion_and_says_why(name):
    r = check_name(name)
    assert any("ISO-8601" in v for v in r.violations)
    assert r.suggestion is None and suggest_name(name) is None
    assert any("cannot infer the acquisition date" in n and name.split("_")[0] in n for n in r.notes), r.notes
    assert date.today().isoformat() not in " ".join(r.notes)


def test_a_name_without_date_says_the_date_is_a_placeholder():
    r = check_name("mon image été.czi", today=date(2026, 1, 2))
    assert r.suggestion.startswith("2026-01-02_") and check_name(r.suggestion).valid
    assert any("no date in the name" in n and "placeholder" in n for n in r.notes)
    assert r.to_dict()["notes"] == r.notes


@pytest.mark.parametrize("name", [
    "2023-01-15_TNT_ALebon_Controle_RAW_v01",  # no extension: the format cannot be guessed
    "noext", ".czi", "2023-01-15 TNT",
    "2023-01-15_TNT_ALebon_Controle_RAW_v01." + "z" * 130,  # the extension alone is too long
    "2023-01-15_TNT_ALebon_Controle_RAW_v" + "9" * 120 + ".czi",
])
def test_a_name_that_cannot_be_fixed_gets_no_suggestion_and_a_reason(name):
    r = check_name(name)
    assert not r.valid and r.suggestion is None and r.notes
    assert suggest_name(name) is None


def test_every_suggestion_passes_the_check():
    import random
    import string

    rng = random.Random(7)
    alphabet = string.ascii_letters + string.digits + "_-. éà()"
    for _ in range(3000):
        name = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 70))) + rng.choice([".czi", ".ome.tiff", ""])
        r = check_name(name, max_length=64)
        if r.suggestion is not None:
            assert check_name(r.suggestion, max_length=64).valid, (name, r.suggestion)
        elif not r.valid:
            assert r.notes, name
