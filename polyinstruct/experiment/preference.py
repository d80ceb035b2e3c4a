"""An arm's preference stage: SFT, then preference tuning (docs/preference.md, "In experiments").

An arm named ``<kind>+pref`` (``en-only+pref``) trains like ``<kind>`` and then runs this stage:

1. the SFT model: the ``<kind>`` cell's finished run when the grid has one (the same training,
   reused), else its own ``sft/`` run;
2. the pairs: ``preference.data`` (a preference file), or ``from: prefs``: the SFT model answers
   ``prompts_per_language`` training prompts of every training language ``k`` times, and
   ``data prefs`` pairs an in-language answer (chosen) with an off-language, echoed or empty one
   (``prefs/``, resumable);
3. preference training (``objective``, default dpo) from the SFT model (an SFT adapter is merged
   first, so the stage's reference is the SFT model) into the cell's ``run/``, so
   prediction and scoring are the SFT cells'. ``budget.json`` of both stages are reported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from polyinstruct.experiment.config import SUFFIX, PreferenceStage, split_arm  # noqa: F401 - the config's part


def prompts_for_prefs(cfg, root: Path) -> list:
    """Training prompts (with their reference answers) of every training language, the first
    ``prompts_per_language`` of each (the arms' parallel data)."""
    from polyinstruct.experiment.arms import load_per_language

    per = load_per_language(cfg)
    n = cfg.preference.prompts_per_language
    out = []
    for lang in cfg.train_languages:
        for c in per.get(lang, [])[:n]:
            c.language = c.language or lang
            c.id = f"{lang}-{c.id}"
            out.append(c)
    return out


def run_preference_stage(cfg, cell, cdir: Path, root: Path, sft_config: dict[str, Any], sft_run: Path,
                         train_sft: Callable[[], None], say: Callable[[str], None], progress: bool) -> None:
    """Train the cell's preference stage into ``cdir/run`` (skipped when finished)."""
    from polyinstruct.train import train

    run_dir = cdir / "run"
    if (run_dir / "budget.json").exists():
        say(f"  preference {cell.name}: finished earlier")
        return
    if not (sft_run / "budget.json").exists():
        train_sft()
    stage: PreferenceStage = cfg.preference
    if stage.from_ == "data":
        pairs = Path(stage.data)
    else:
        from polyinstruct.prefs.build import make_prefs

        pairs = cdir / "prefs" / "pairs.jsonl"
        if not pairs.exists():
            say(f"  prefs {cell.name}: {stage.k} answers per prompt from {sft_run.name}")
            make_prefs(prompts_for_prefs(cfg, root), str(sft_run), cdir / "prefs", k=stage.k,
                       max_new_tokens=stage.max_new_tokens, batch_size=cfg.eval.batch_size, seed=cfg.seed,
                       lid=cfg.lid, reference_as_chosen=stage.reference_as_chosen,
                       backend_kwargs={"dtype": cfg.eval.resolved_dtype()})
    start = sft_run
    if (sft_run / "adapter").is_dir():  # the stage starts from (and its reference is) the merged SFT model
        start = cdir / "sft-merged"
        if not (start / "config.json").exists():
            from polyinstruct.train.merge import merge_adapter

            say(f"  merge {cell.name}'s SFT adapter for its preference stage")
            merge_adapter(sft_run, start)
    tcfg = stage.stage_train_config(sft_config, model=str(start), data=str(pairs), output_dir=str(run_dir))
    say(f"  preference {cell.name} ({tcfg['objective']}) on {pairs.name}")
    train(tcfg, progress=progress)
