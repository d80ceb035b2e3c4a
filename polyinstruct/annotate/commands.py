"""``polyinstruct annotate ...``: human evaluation, the browser chat and the arena (docs/annotation.md)."""

from __future__ import annotations

import argparse
import getpass
import json
import os


def _store(args: argparse.Namespace, *, must_exist: bool = True, journal_mode: str = "wal"):
    from polyinstruct.annotate.store import Store
    from polyinstruct.errors import PolyinstructError

    if must_exist and not os.path.exists(args.db):
        raise PolyinstructError(f"{args.db}: no annotation database (create it with `polyinstruct annotate import`)")
    return Store(args.db, journal_mode=journal_mode)


def _import(args: argparse.Namespace) -> int:
    paths, names = [], []
    for spec in args.predictions:
        name, sep, path = spec.partition("=")
        if sep and not os.path.exists(spec):
            paths.append(path)
            names.append(name)
        else:
            paths.append(spec)
            names.append(None)
    res = _store(args, must_exist=False).import_predictions(paths, k=args.k, seed=args.seed, names=names)
    print(json.dumps(res, ensure_ascii=False, indent=2))
    return 0


def _add_user(args: argparse.Namespace) -> int:
    from polyinstruct.errors import PolyinstructError

    if args.password_env:
        password = os.environ.get(args.password_env)
        if not password:
            raise PolyinstructError(f"environment variable {args.password_env} is empty or unset")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            raise PolyinstructError("the two passwords differ")
    _store(args, must_exist=False).add_annotator(args.name, password, admin=args.admin, replace=args.replace)
    print(f"annotator {args.name!r} {'updated' if args.replace else 'created'}{' (admin)' if args.admin else ''}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from polyinstruct.annotate.app import serve
    from polyinstruct.annotate.engines import load_engine

    store = _store(args, journal_mode=args.journal_mode)
    engines = {}
    for spec in args.model or []:
        e = load_engine(spec, **({"device": args.device} if args.device else {}))
        engines[e.name] = e
    serve(store, engines, host=args.host, port=args.port, lease_s=args.lease_minutes * 60,
          https_only=args.https_only)
    return 0


def _progress(args: argparse.Namespace) -> int:
    print(json.dumps(_store(args).progress(), indent=2, ensure_ascii=False))
    return 0


def _export(args: argparse.Namespace) -> int:
    from polyinstruct.fileio import write_jsonl

    n = write_jsonl(args.out, _store(args).export_rows(args.kind, args.source))
    print(f"{args.out}: {n} rows ({args.kind})")
    return 0


def _agreement(args: argparse.Namespace) -> int:
    from polyinstruct.annotate.agreement import agreement_table, to_markdown
    from polyinstruct.fileio import atomic_open, iter_jsonl

    store = _store(args)
    judged = list(iter_jsonl(args.judgments)) if args.judgments else None
    table = agreement_table(store.export_rows("pairwise", args.source), store.export_rows("acceptability", args.source),
                            judged)
    md = to_markdown(table)
    if args.out:
        with atomic_open(args.out) as f:
            f.write(md)
    print(md)
    print(json.dumps(table, ensure_ascii=False))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    top = subparsers.add_parser("annotate", help="human evaluation in the browser: blind pairwise annotation, chat, arena",
                                description="Blind pairwise human evaluation (acceptability + 5-way preference, k "
                                            "annotators per item), a browser chat and an arena. See docs/annotation.md.")
    sub = top.add_subparsers(dest="annotate_command", metavar="ACTION", required=True)

    def db(p: argparse.ArgumentParser) -> None:
        p.add_argument("db", help="the annotation database (SQLite file)")

    p = sub.add_parser("import", help="add items from the prediction files of two or more systems")
    db(p)
    p.add_argument("predictions", nargs="+", help="predictions JSONL per system (`polyinstruct predict` output); "
                                                  "NAME=PATH names the system instead of the rows' 'model'")
    p.add_argument("--k", type=int, default=3, help="annotators per item (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the A/B display order (recorded per item)")
    p.set_defaults(func=_import)

    p = sub.add_parser("add-user", help="create an annotator account (password hashed with argon2)")
    db(p)
    p.add_argument("name")
    p.add_argument("--admin", action="store_true", help="may see everyone's progress")
    p.add_argument("--replace", action="store_true", help="set a new password for an existing account")
    p.add_argument("--password-env", help="read the password from this environment variable (default: prompt)")
    p.set_defaults(func=_add_user)

    p = sub.add_parser("serve", help="run the annotation, chat and arena app (loopback only by default)")
    db(p)
    p.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--model", action="append", metavar="NAME=SPEC",
                   help="a chat/arena model: NAME=RUN_DIR (loaded here) or NAME=http://HOST/v1[#MODEL] "
                        "(any OpenAI-compatible endpoint, e.g. `polyinstruct serve`); repeat for the arena")
    p.add_argument("--device", help="device for local models (cpu, cuda ...)")
    p.add_argument("--lease-minutes", type=float, default=30.0,
                   help="an unanswered item goes back to the pool after this long (default 30)")
    p.add_argument("--https-only", action="store_true", help="send the session cookie over HTTPS only")
    p.add_argument("--journal-mode", default="wal", choices=["wal", "delete"],
                   help="SQLite journal (default wal; 'delete' only to compare in bench/annotate_load.py)")
    p.set_defaults(func=_serve)

    p = sub.add_parser("progress", help="items complete and judgments per annotator")
    db(p)
    p.set_defaults(func=_progress)

    p = sub.add_parser("export", help="write judgments as JSONL for `polyinstruct judge-agreement`")
    db(p)
    p.add_argument("--out", required=True)
    p.add_argument("--kind", default="pairwise", choices=["pairwise", "acceptability"])
    p.add_argument("--source", default="import", choices=["import", "arena", "all"],
                   help="annotation items, arena votes or both (default: import)")
    p.set_defaults(func=_export)

    p = sub.add_parser("agreement", help="agreement table: acceptability, pairwise (ties half), Cohen's/Fleiss' "
                                         "kappa, human vs judge Pearson per language")
    db(p)
    p.add_argument("--judgments", help="judgments.jsonl of `polyinstruct judge` for the same systems and prompts")
    p.add_argument("--source", default="import", choices=["import", "arena", "all"])
    p.add_argument("--out", help="also write the markdown table here")
    p.set_defaults(func=_agreement)
