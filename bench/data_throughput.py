"""Throughput and peak memory of converting Alpaca JSONL to canonical records.

polyinstruct's streaming path (read -> convert -> validate -> write JSONL) is
measured beside a peer: the usual Hugging Face `datasets` route
(``load_dataset("json")`` -> ``map`` to messages -> ``to_json``), which is what
most training frameworks do. Each measurement runs in a fresh subprocess so its
peak RSS is its own. A second polyinstruct run on a larger file checks that
memory stays flat (streaming). The last line printed is one JSON object.

    python bench/data_throughput.py            # 200,000 records; memory check on 1,000,000
    python bench/data_throughput.py --quick    # 50,000 / 200,000, under a minute
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = ("the a model answer question data language water light city music river code list number "
         "explain write give three reasons summary short poem story healthy travel learn time people").split()


def generate(path: Path, n: int, seed: int = 0) -> None:
    """Alpaca records of realistic length (~15-word instructions, ~60-word outputs), a third with input."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            rec = {"instruction": " ".join(rng.choices(WORDS, k=rng.randint(6, 25))) + "?",
                   "input": " ".join(rng.choices(WORDS, k=rng.randint(5, 30))) if i % 3 == 0 else "",
                   "output": " ".join(rng.choices(WORDS, k=rng.randint(20, 120))) + "."}
            f.write(json.dumps(rec) + "\n")


def run_polyinstruct(src: str, dst: str) -> dict:
    from polyinstruct.data.formats import read_records, write_records

    t = time.perf_counter()
    stream = read_records(src, "alpaca", on_error="skip", rejects_path=dst + ".rejects")
    n = write_records(stream, dst)
    return {"records": n, "seconds": time.perf_counter() - t, "rejected": sum(stream.rejected.values())}


def run_datasets(src: str, dst: str) -> dict:
    import datasets

    datasets.disable_progress_bars()
    t = time.perf_counter()
    cache = tempfile.mkdtemp()
    ds = datasets.load_dataset("json", data_files=src, split="train", cache_dir=cache)

    def to_messages(ex):
        user = ex["instruction"] + ("\n\n" + ex["input"] if ex["input"] else "")
        return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": ex["output"]}]}

    ds = ds.map(to_messages, remove_columns=ds.column_names)
    ds.to_json(dst, force_ascii=False)
    return {"records": len(ds), "seconds": time.perf_counter() - t, "rejected": 0}


def child(which: str, src: str, dst: str) -> None:
    import resource

    out = (run_polyinstruct if which == "polyinstruct" else run_datasets)(src, dst)
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def measure(which: str, src: Path, dst: Path) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", which, str(src), str(dst)], capture_output=True,
                          text=True, env={**os.environ, "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    if proc.returncode != 0:
        raise SystemExit(f"{which} failed:\n{proc.stderr[-3000:]}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    r["records_per_s"] = r["records"] / r["seconds"]
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--memory-records", type=int, default=1_000_000)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument("--child", nargs=3, metavar=("WHICH", "SRC", "DST"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    if args.quick:
        args.records, args.memory_records = 50_000, 200_000
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / "alpaca.jsonl"
        generate(src, args.records)
        mib = src.stat().st_size / 2**20
        print(f"{args.records:,} Alpaca records ({mib:.0f} MiB), convert + validate + write JSONL:")
        results = {}
        ours = measure("polyinstruct", src, tmp / "ours.jsonl")
        results["polyinstruct"] = ours
        print(f"  polyinstruct  {ours['records_per_s']:>10,.0f} records/s  peak {ours['peak_rss_mib']:.0f} MiB")
        if not args.no_peer:
            peer = measure("datasets", src, tmp / "peer.jsonl")
            results["datasets"] = peer
            print(f"  datasets      {peer['records_per_s']:>10,.0f} records/s  peak {peer['peak_rss_mib']:.0f} MiB")
        big = tmp / "big.jsonl"
        generate(big, args.memory_records, seed=1)
        src.unlink()
        mem = measure("polyinstruct", big, tmp / "big_out.jsonl")
        print(f"{args.memory_records:,} records (streaming check): polyinstruct {mem['records_per_s']:,.0f} records/s, "
              f"peak {mem['peak_rss_mib']:.0f} MiB")
    summary = {
        "records": args.records, "cpus": os.cpu_count(),
        "polyinstruct_records_per_s": round(ours["records_per_s"]),
        "polyinstruct_peak_mib": round(ours["peak_rss_mib"]),
        "datasets_records_per_s": round(results["datasets"]["records_per_s"]) if "datasets" in results else None,
        "datasets_peak_mib": round(results["datasets"]["peak_rss_mib"]) if "datasets" in results else None,
        "memory_check_records": args.memory_records,
        "memory_check_records_per_s": round(mem["records_per_s"]),
        "memory_check_peak_mib": round(mem["peak_rss_mib"]),
        "target_records_per_s": 20_000, "target_peak_mib": 1024,
        "meets_targets": ours["records_per_s"] >= 20_000 and mem["peak_rss_mib"] < 1024,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
