"""Checkpoints hold state, never code; replacing ``best`` survives a crash at any point."""

from __future__ import annotations

import os
import pickle
import random
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from polyinstruct.train import checkpoint as ck
from polyinstruct.train.checkpoint import CheckpointError, load_checkpoint, save_best, save_checkpoint


class _Payload:
    """Unpickling this creates ``marker``: the stand-in for ``os.system`` in a planted file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _setup(tmp_path):
    from accelerate import Accelerator

    torch.manual_seed(0)
    acc = Accelerator(cpu=True)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.5), torch.nn.Linear(4, 1))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))
    model, opt = acc.prepare(model, opt)
    for _ in range(3):
        model(torch.randn(8, 4)).pow(2).mean().backward()
        opt.step()
        sched.step()
        opt.zero_grad()
    return acc, model, opt, sched


def test_checkpoint_state_loads_weights_only_and_resumes_rng_exactly(tmp_path):
    acc, model, opt, sched = _setup(tmp_path)
    random.seed(3)
    np.random.seed(4)
    path = save_checkpoint(acc, model, opt, sched, {"step": 3}, tmp_path / "ck", keep_last=2)
    for name in ("optimizer.pt", "scheduler.pt", "rng_0.pt"):  # plain state: the strict loader reads it
        torch.load(path / name, weights_only=True)
    expected = (random.random(), float(np.random.rand()), torch.rand(3), opt.state_dict()["state"][0]["exp_avg"])
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    acc2, model2, opt2, sched2 = _setup(tmp_path)
    with torch.no_grad():
        for p in model2.parameters():
            p.zero_()
    assert load_checkpoint(acc2, model2, opt2, sched2, path) == {"step": 3}
    got = (random.random(), float(np.random.rand()), torch.rand(3), opt2.state_dict()["state"][0]["exp_avg"])
    assert got[0] == expected[0] and got[1] == expected[1]
    assert torch.equal(got[2], expected[2]) and torch.equal(got[3], expected[3])
    assert sched2.state_dict()["last_epoch"] == 3
    for a, b in zip(model.parameters(), model2.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("planted", ["scheduler.pt", "optimizer.pt", "rng_0.pt"])
def test_planted_pickle_in_a_checkpoint_is_refused_and_never_runs(tmp_path, planted):
    acc, model, opt, sched = _setup(tmp_path)
    path = save_checkpoint(acc, model, opt, sched, {"step": 3}, tmp_path / "ck", keep_last=2)
    marker = tmp_path / "PWNED"
    torch.save({"last_epoch": 3, "evil": _Payload(marker)}, path / planted)
    with pytest.raises(CheckpointError, match=rf"{planted}: refused to load: it would import .*open.*never unpickles code"):
        load_checkpoint(acc, model, opt, sched, path)
    assert not marker.exists()


def test_corrupt_checkpoint_file_is_a_clear_error(tmp_path):
    acc, model, opt, sched = _setup(tmp_path)
    path = save_checkpoint(acc, model, opt, sched, {"step": 3}, tmp_path / "ck", keep_last=2)
    (path / "scheduler.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="scheduler.pt: unreadable checkpoint file"):
        load_checkpoint(acc, model, opt, sched, path)


def test_engine_folder_scan_refuses_code_without_running_it(tmp_path, monkeypatch):
    marker = tmp_path / "PWNED"
    engine = tmp_path / "engine"
    engine.mkdir()
    torch.save({"w": torch.zeros(2), "step": 1}, engine / "optimizer.bin")  # plain state passes
    (engine / "meta.pkl").write_bytes(pickle.dumps({"rng": np.zeros(3, dtype=np.uint32)}, protocol=4))
    ck.scan_engine_folder(engine)
    for name, write in [
        ("raw.metadata", lambda p: p.write_bytes(pickle.dumps(_Payload(marker), protocol=2))),
        ("model.bin", lambda p: torch.save([_Payload(marker)], p)),
        (".metadata", lambda p: p.write_bytes(pickle.dumps(_Payload(marker), protocol=0))),
    ]:
        bad = engine / name
        write(bad)
        with pytest.raises(CheckpointError, match=rf"{name}: refused to load: it would import .*open"):
            ck.scan_engine_folder(engine)
        bad.unlink()
    assert zipfile.is_zipfile(engine / "optimizer.bin") and not marker.exists()
    (engine / "x.pkl").write_bytes(pickle.dumps(_Payload(marker), protocol=4))
    monkeypatch.setenv("POLYINSTRUCT_TRUSTED_CHECKPOINTS", str(tmp_path))  # the explicit way out
    ck.scan_engine_folder(engine)
    assert not marker.exists()


class _Crash(Exception):
    pass


def _fake_acc():
    class A:
        is_main_process = True

        def wait_for_everyone(self):
            pass
    return A()


@pytest.mark.parametrize("crash_at", ["after_tmp_written", "between_renames", "before_cleanup"])
def test_a_crash_while_replacing_best_never_leaves_the_run_without_it(tmp_path, monkeypatch, crash_at):
    root = tmp_path / "checkpoints"
    model = torch.nn.Linear(2, 1)
    monkeypatch.setattr(ck, "gather_state_dict", lambda acc, m, trainable_only: ck.trainable_state(m))
    with torch.no_grad():
        model.weight.fill_(1.0)
    save_best(_fake_acc(), model, {"step": 1}, root)
    with torch.no_grad():
        model.weight.fill_(2.0)
    real_replace, real_rmtree = os.replace, ck.shutil.rmtree

    def replace(src, dst):
        if crash_at == "after_tmp_written" and Path(dst).name == ".old-best":
            raise _Crash  # SIGKILL with the new copy complete, before best is touched
        if crash_at == "between_renames" and Path(dst).name == "best":
            raise _Crash  # best moved aside, the new copy not yet in place
        return real_replace(src, dst)

    def rmtree(path, *a, **kw):
        if crash_at == "before_cleanup" and Path(path).name == ".old-best":
            raise _Crash
        return real_rmtree(path, *a, **kw)

    monkeypatch.setattr(ck.os, "replace", replace)
    monkeypatch.setattr(ck.shutil, "rmtree", rmtree)
    with pytest.raises(_Crash):
        save_best(_fake_acc(), model, {"step": 2}, root)
    monkeypatch.setattr(ck.os, "replace", real_replace)
    monkeypatch.setattr(ck.shutil, "rmtree", real_rmtree)
    if crash_at == "between_renames":
        assert not (root / "best").exists()  # the window the old code could not recover from
    fresh = torch.nn.Linear(2, 1)
    state = ck.load_best_weights(fresh, root)
    assert state is not None, "the run lost its best checkpoint"
    assert float(fresh.weight[0, 0]) == float(state["step"])  # weights and state.json from the same save
    assert state["step"] == (1 if crash_at == "after_tmp_written" else 2)
    assert sorted(p.name for p in root.iterdir()) == ["best"]
    save_best(_fake_acc(), model, {"step": 3}, root)  # and the next replacement works as usual
    assert ck.load_best_weights(fresh, root) == {"step": 3}


def test_a_crash_while_re_saving_the_same_step_keeps_a_complete_checkpoint(tmp_path, monkeypatch):
    acc, model, opt, sched = _setup(tmp_path)
    root = tmp_path / "ck"
    save_checkpoint(acc, model, opt, sched, {"step": 3}, root, keep_last=1)
    real_replace = os.replace

    def replace(src, dst):
        if Path(dst).name == "step-00000003" and Path(src).name.startswith(".tmp-"):
            raise _Crash  # the old step-3 moved aside, the new one not yet in place
        return real_replace(src, dst)

    monkeypatch.setattr(ck.os, "replace", replace)
    with pytest.raises(_Crash):
        save_checkpoint(acc, model, opt, sched, {"step": 3}, root, keep_last=1)
    monkeypatch.setattr(ck.os, "replace", real_replace)
    assert not (root / "step-00000003").exists()
    [(step, path)] = ck.list_checkpoints(root)
    assert step == 3 and load_checkpoint(acc, model, opt, sched, path) == {"step": 3}
    save_checkpoint(acc, model, opt, sched, {"step": 3}, root, keep_last=1)  # and the next save tidies up
    assert sorted(p.name for p in root.iterdir()) == ["step-00000003"]
