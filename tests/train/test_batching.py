"""Data order and learning-rate schedule: pure functions the exact-resume and DDP guarantees rest on."""

from __future__ import annotations

from polyinstruct.train.batching import BatchPlan, loss_tokens
from polyinstruct.train.loop import lr_lambda


def test_epoch_order_is_seeded_and_covers_every_example():
    plan = BatchPlan(n_examples=37, global_batch=8, micro_batch=2, seed=3)
    assert plan.permutation(0) == BatchPlan(37, 8, 2, seed=3).permutation(0)
    assert plan.permutation(0) != plan.permutation(1)
    seen = [i for s in range(plan.steps_per_epoch) for i in plan.step_examples(0, s)]
    assert sorted(seen) == list(range(37)) and plan.steps_per_epoch == 5


def test_processes_share_exactly_the_micro_batches_of_one_process():
    lengths = [(i * 7) % 13 + 1 for i in range(16)]
    one = BatchPlan(16, 8, 2, world_size=1)
    two = BatchPlan(16, 8, 2, world_size=2)
    assert (one.grad_accum, two.grad_accum) == (4, 2)
    ex = one.step_examples(0, 0)
    micro = one.micro_batches(ex, lengths)
    shares = [two.for_rank(micro, r) for r in range(2)]
    assert sorted(map(tuple, shares[0] + shares[1])) == sorted(map(tuple, one.for_rank(micro, 0)))
    # micro-batches are length-sorted, so each holds examples of similar length
    assert [lengths[i] for mb in micro for i in mb] == sorted((lengths[i] for i in ex), reverse=True)


def test_a_short_last_batch_gives_idle_processes_a_no_op_pass():
    plan = BatchPlan(10, 8, 2, world_size=2)
    ex = plan.step_examples(0, 1)
    assert len(ex) == 2
    micro = plan.micro_batches(ex, [1] * 10)
    assert len(micro) == 1 and sorted(micro[0]) == sorted(ex)
    assert plan.for_rank(micro, 0) == [micro[0], []] and plan.for_rank(micro, 1) == [[], []]


def test_loss_tokens_count_labels_after_the_causal_shift():
    assert loss_tokens([5, -100, 7, 8]) == 2  # position 0 never has a prediction
    assert loss_tokens([-100, -100, 3]) == 1


def test_schedules_warm_up_then_decay():
    lin = lr_lambda("linear", warmup=2, total=10)
    assert [round(lin(s), 3) for s in (0, 1, 2, 6, 10)] == [0.5, 1.0, 1.0, 0.5, 0.0]
    cos = lr_lambda("cosine", warmup=0, total=10)
    assert cos(0) == 1.0 and abs(cos(5) - 0.5) < 1e-9 and cos(10) == 0.0
    assert lr_lambda("constant", warmup=3, total=10)(0) == 1.0


def test_length_grouping_keeps_every_example_once_and_groups_similar_lengths():
    lengths = tuple((i * 37) % 101 + 1 for i in range(70))
    plan = BatchPlan(70, 8, 4, seed=1, group_window=4, lengths=lengths)
    order = plan.permutation(0)
    assert sorted(order) == list(range(70))  # an epoch still sees each example once
    assert order == BatchPlan(70, 8, 4, seed=1, group_window=4, lengths=lengths).permutation(0)  # seeded
    assert order != plan.permutation(1)
    batches = [plan.step_examples(0, s, order) for s in range(plan.steps_per_epoch)]
    assert len(batches[-1]) == 70 % 8  # the short last batch stays last
    # each full batch comes from one length-sorted window: its spread is far below a random batch's
    spread = lambda b: max(lengths[i] for i in b) - min(lengths[i] for i in b)  # noqa: E731
    plain = BatchPlan(70, 8, 4, seed=1)
    random_batches = [plain.step_examples(0, s) for s in range(plain.steps_per_epoch - 1)]
    assert sum(map(spread, batches[:-1])) * 3 < sum(map(spread, random_batches))
    # batch order is shuffled: not simply longest-first within each window
    firsts = [max(lengths[i] for i in b) for b in batches[:4]]
    assert firsts != sorted(firsts, reverse=True) or plan.permutation(1)[:8] != order[:8]


def test_packed_micro_batches_are_balanced_by_tokens_and_hold_the_same_examples():
    import random

    rng = random.Random(0)
    lengths = [rng.randint(5, 500) for _ in range(64)]
    plain = BatchPlan(64, 16, 8, seed=2)
    packed = BatchPlan(64, 16, 8, seed=2, balance=True)
    for step in range(4):
        examples = plain.step_examples(0, step)
        assert examples == packed.step_examples(0, step)  # the same global batch
        sorted_mbs, balanced = plain.micro_batches(examples, lengths), packed.micro_batches(examples, lengths)
        assert sorted(i for mb in balanced for i in mb) == sorted(examples)
        assert [len(mb) for mb in balanced] == [8, 8]
        heaviest = lambda mbs: max(sum(lengths[i] for i in mb) for mb in mbs)  # noqa: E731
        assert heaviest(balanced) <= heaviest(sorted_mbs)
        assert balanced == packed.micro_batches(examples, lengths)  # deterministic
    # by hand: 10, 9, 8, 3, 2, 1 into two micro-batches of 3 -> [10, 3, 2] and [9, 8, 1]
    lens = [10, 9, 8, 3, 2, 1]
    assert BatchPlan(6, 6, 3, balance=True).micro_batches(list(range(6)), lens) == [[0, 3, 4], [1, 2, 5]]
    # a short last micro-batch keeps its size: 5 examples in micro-batches of 2 -> 2, 2, 1
    assert [len(mb) for mb in BatchPlan(5, 5, 2, balance=True).micro_batches(list(range(5)), lens)] == [2, 2, 1]
