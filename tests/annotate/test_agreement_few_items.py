"""Cohen's kappa from one shared item is 1.0: the agreement table says how few items it rests on."""

from polyinstruct.annotate.agreement import agreement_table, to_markdown
from polyinstruct.judge.agreement import MIN_KAPPA_ITEMS, annotator_agreement


def _pref(annotator, item, pref="win"):
    return {"id": item, "model": "a", "baseline": "b", "annotator": annotator, "preference": pref, "language": "fr"}


def test_one_shared_item_is_flagged_and_the_count_is_reported():
    rows = [_pref("ann1", "q1"), _pref("ann2", "q1"), _pref("ann1", "q2", "loss")]
    out = annotator_agreement(rows, field="preference")
    assert out["kappa"] == 1.0 and out["fewest_shared_items"] == 1
    assert "only 1 item rated by both annotators" in out["warning"]
    md = to_markdown(agreement_table(rows, []))
    assert "fewest items a pair shares" in md and "| 1 |" in md
    assert "**Warning (pairwise preference):** only 1 item" in md


def test_enough_shared_items_give_no_warning():
    rows = [_pref(a, f"q{i}", "win" if i % 3 else "tie") for i in range(MIN_KAPPA_ITEMS) for a in ("ann1", "ann2")]
    out = annotator_agreement(rows, field="preference")
    assert out["fewest_shared_items"] == MIN_KAPPA_ITEMS and "warning" not in out
