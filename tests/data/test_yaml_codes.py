"""YAML 1.2 booleans: `no` is Norwegian (issue: language codes read as False)."""

from __future__ import annotations

import pytest
import yaml

from polyinstruct.config import apply_overrides, load_yaml
from polyinstruct.data.catalogue import load_catalogue
from polyinstruct.errors import ConfigError
from polyinstruct.lang.codes import validate_language_code
from polyinstruct.yamlio import safe_load


def test_yaml11_words_stay_strings_and_real_booleans_stay_booleans():
    data = safe_load("langs: [no, yes, on, off, y, n, NO]\nflag: true\nother: False\nn: 3\nx: null")
    assert data == {"langs": ["no", "yes", "on", "off", "y", "n", "NO"], "flag": True, "other": False,
                    "n": 3, "x": None}
    assert yaml.safe_load("[no]") == [False]  # what PyYAML alone does (the bug)


def test_safe_load_still_refuses_python_objects():
    with pytest.raises(yaml.YAMLError):
        safe_load("!!python/object/apply:os.system ['echo hacked']")


def test_config_files_and_overrides_keep_no(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("train_languages: [en, no]\n")
    assert load_yaml(f)["train_languages"] == ["en", "no"]
    assert apply_overrides({}, ["train_languages=[no,fr]"])["train_languages"] == ["no", "fr"]


def test_builtin_catalogue_lists_norwegian_eval_as_no():
    entry = load_catalogue().get("polyinstruct-eval-no")
    assert entry.languages == ["no"]


def test_user_catalogue_with_languages_no_reads_records(tmp_path):
    data = tmp_path / "nb.jsonl"
    data.write_text('{"instruction": "Hei", "output": "Hallo"}\n', encoding="utf-8")
    cat = tmp_path / "cat.yaml"
    cat.write_text(f"datasets:\n  my-nb:\n    path: {data.name}\n    languages: [no]\n", encoding="utf-8")
    recs = list(load_catalogue([cat]).open("my-nb"))
    assert [r.language for r in recs] == ["no"]


@pytest.mark.parametrize("bad", ["../../x", "en/../..", "e", "en us", "EN", ""])
def test_catalogue_rejects_malformed_language_codes_with_file_and_field(tmp_path, bad):
    cat = tmp_path / "cat.yaml"
    cat.write_text(f"datasets:\n  d:\n    path: d.jsonl\n    languages: [{bad!r}]\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_catalogue([cat])
    assert str(cat) in str(e.value) and "d.languages[0]" in str(e.value)


def test_validate_language_code():
    assert validate_language_code("no") == "no"
    assert validate_language_code("zh-Hans") == "zh-Hans"
    for bad in ("../x", "a", False, 3, "en.txt"):
        with pytest.raises(ValueError):
            validate_language_code(bad)
