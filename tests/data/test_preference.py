"""Preference readers: every public shape, hostile rows, records in = out + rejects, stats, the CLI."""

from __future__ import annotations

import json

import pytest

from polyinstruct.data.preference import (preference_stats, read_preferences, validate_preference_file,
                                          wants_preference)
from polyinstruct.data.validate import RecordError

U = {"role": "user", "content": "Wie geht's?"}


def _write(tmp_path, name, rows):
    p = tmp_path / name
    p.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows),
                 encoding="utf-8")
    return p


def _read(p, **kw):
    s = read_preferences(p, on_error="skip", **kw)
    recs = list(s)
    assert s.rows == len(recs) + sum(s.rejected.values())  # records in = out + rejects
    return recs, s


def test_ultrafeedback_binarized_and_hostile_rows(tmp_path):
    good = {"prompt": U["content"], "prompt_id": "p1", "score_chosen": 9.0, "score_rejected": 3.0,
            "chosen": [U, {"role": "assistant", "content": "Gut, danke."}],
            "rejected": [U, {"role": "assistant", "content": "I am fine."}],
            "messages": [U, {"role": "assistant", "content": "Gut, danke."}]}
    rows = [good,
            {**good, "prompt_id": "p2", "rejected": [{"role": "user", "content": "other"},
                                                     {"role": "assistant", "content": "x"}]},
            {**good, "prompt_id": "p3", "chosen": [U]},  # no answer
            {**good, "prompt_id": "p4", "chosen": [U, {"role": "assistant", "content": "   "}]},  # empty
            {**good, "prompt_id": "p5", "rejected": "not a list"},
            {**good, "prompt_id": "p6", "chosen": [U, {"role": "robot", "content": "beep"}]},
            {**good, "prompt_id": "p7", "prompt": "a different question"},
            {**good, "prompt_id": "p8", "rejected": [U, {"role": "assistant", "content": "Gut, danke."}]},
            {**good, "prompt_id": "p1"},  # duplicate id
            "{not json",
            {**good, "prompt_id": "p9", "chosen": [U, {"role": "assistant", "content": "bad \udc80 text"}]}]
    p = _write(tmp_path, "uf.jsonl", rows)
    recs, s = _read(p)
    assert [r.id for r in recs] == ["p1"]
    r = recs[0]
    assert [m.content for m in r.prefix] == [U["content"]] and r.chosen.content == "Gut, danke."
    assert r.rejected.content == "I am fine." and r.meta == {"score_chosen": 9.0, "score_rejected": 3.0}
    assert dict(s.rejected) == {"prefix-mismatch": 2, "no-final-assistant": 1, "empty-chosen": 1, "bad-type": 1,
                                "unknown-role": 1, "identical-pair": 1, "duplicate-id": 1,
                                "malformed-json": 2}  # the reader refuses a lone surrogate as bad JSON
    msgs = s.sink.messages
    assert any(m.startswith(f"{p}:2: rejected[0]: ") for m in msgs)
    assert any(m.startswith(f"{p}:4: chosen.content: empty chosen answer") for m in msgs)
    with pytest.raises(RecordError, match=r"uf.jsonl:2: rejected\[0\]"):  # raise mode: the first bad row
        list(read_preferences(p))


def test_hh_rlhf_transcripts(tmp_path):
    pre = "\n\nHuman: Hi there\n\nAssistant: Hello.\n\nHuman: Tell me a joke"
    rows = [{"chosen": pre + "\n\nAssistant: Why did the chicken...", "rejected": pre + "\n\nAssistant: No."},
            {"chosen": pre + "\n\nAssistant: A", "rejected": "\n\nHuman: Other\n\nAssistant: B"},
            {"chosen": "no transcript markers", "rejected": pre + "\n\nAssistant: B"},
            {"chosen": pre, "rejected": pre + "\n\nAssistant: B"},  # ends with a human turn
            {"chosen": 5, "rejected": pre + "\n\nAssistant: B"}]
    p = _write(tmp_path, "hh.jsonl", rows)
    recs, s = _read(p, format="hh_rlhf", language="en")
    assert len(recs) == 1
    r = recs[0]
    assert [(m.role, m.content) for m in r.prefix] == [("user", "Hi there"), ("assistant", "Hello."),
                                                       ("user", "Tell me a joke")]
    assert (r.chosen.content, r.rejected.content) == ("Why did the chicken...", "No.")
    assert r.chosen.language == r.rejected.language == "en"  # turns take the record's language
    assert dict(s.rejected) == {"prefix-mismatch": 1, "bad-transcript": 1, "no-final-assistant": 1, "bad-type": 1}


def test_trl_string_conversational_and_unpaired(tmp_path):
    rows = [{"prompt": "The sky is", "chosen": " blue.", "rejected": " green."},
            {"prompt": [{"role": "user", "content": "Quelle couleur?"}],
             "chosen": [{"role": "assistant", "content": "Bleu.", "language": "fr"}],
             "rejected": [{"role": "assistant", "content": "Blue.", "language": "en"}], "language": "fr"},
            {"prompt": [{"role": "user", "content": "Q"}], "chosen": [{"role": "user", "content": "A"}],
             "rejected": [{"role": "assistant", "content": "B"}]},  # chosen is not an assistant turn
            {"prompt": "Q", "chosen": "A", "rejected": None},  # paired shape missing its rejected side
            {"prompt": {"x": 1}, "chosen": "A", "rejected": "B"},
            {"prompt": "Q", "chosen": "A", "rejected": "B", "language": "not a code!"}]
    p = _write(tmp_path, "trl.jsonl", rows)
    recs, s = _read(p, format="trl")
    assert [r.chosen.content for r in recs] == [" blue.", "Bleu."]
    assert (recs[1].chosen.language, recs[1].rejected.language, recs[1].language) == ("fr", "en", "fr")
    assert dict(s.rejected) == {"bad-completion": 1, "missing-field": 1, "bad-type": 1, "bad-language": 1}
    un = _write(tmp_path, "kto.jsonl", [{"prompt": "Q", "completion": "good", "label": True},
                                        {"prompt": "Q2", "completion": "bad", "label": False},
                                        {"prompt": "Q3", "completion": "?", "label": "yes"}])
    recs, s = _read(un)  # detected as trl_unpaired
    assert [(r.chosen is not None, r.rejected is not None) for r in recs] == [(True, False), (False, True)]
    assert dict(s.rejected) == {"bad-type": 1}


def test_canonical_round_trip_stats_and_detection(tmp_path):
    rec = {"id": "a", "messages": [{"role": "user", "content": "Hola, ¿qué tal?"}],
           "chosen": {"content": "Muy bien, gracias.", "language": "es"},
           "rejected": {"content": "Hola, ¿qué tal?", "language": "es"}, "language": "es",
           "meta": {"reasons": ["rejected:echo"]}}
    p = _write(tmp_path, "pref.jsonl", [rec, {"id": "b", "messages": [{"role": "user", "content": "x"}],
                                             "chosen": {"content": "y"}},
                                        {"id": "c", "messages": [{"role": "user", "content": "x"},
                                                                 {"role": "assistant", "content": "y"}],
                                         "chosen": {"content": "z"}}])
    recs, s = _read(p)
    assert recs[0].to_dict() == {**rec, "source": "pref"}
    assert dict(s.rejected) == {"prefix-not-user": 1}
    st = preference_stats(iter(recs))
    assert st["overall"]["instances"] == 2 and st["overall"]["paired"] == 1 and st["overall"]["chosen_only"] == 1
    assert st["reasons"] == {"rejected:echo": 1} and st["per_language"]["es"]["mean_chosen_length"] == 3.0
    assert wants_preference(p, None) and not wants_preference(p, "alpaca")
    rep = validate_preference_file(p)
    assert (rep["rows"], rep["records"], rep["rejected_total"], rep["ok"]) == (3, 2, 1, False)


def test_cli_stats_and_validate(tmp_path, capsys):
    from polyinstruct.cli import main

    p = _write(tmp_path, "trl.jsonl", [{"prompt": "Q", "chosen": "A a", "rejected": "B"},
                                       {"prompt": "Q2", "chosen": "A", "rejected": "A"}])
    assert main(["data", "validate", str(p)]) == 1
    err = capsys.readouterr().err
    assert f"{p}:2: rejected.content: chosen and rejected are the same text" in err
    assert main(["data", "validate", str(p), "--on-error", "skip"]) == 0
    assert main(["data", "stats", str(tmp_path / "trl.clean.jsonl"), "--json-only"]) == 0
    st = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert st["kind"] == "preference" and st["overall"]["paired"] == 1 and st["overall"]["mean_chosen_length"] == 2.0
