"""The class-balanced replay memory."""
import torch

from runner.trainers.base import IndexSampler
from runner.trainers.replay import ReplayBuffer


def _task(classes, n_per_class=50):
    y = torch.tensor(classes).repeat_interleave(n_per_class)
    x = torch.randn(len(y), 3) + y[:, None].float()
    return x, y


def test_capacity_shared_equally_across_groups():
    buf = ReplayBuffer(100, torch.Generator().manual_seed(0))
    buf.add_task(1, *_task([0, 1]))
    assert len(buf) == 100 and buf.counts() == {(1, 0): 50, (1, 1): 50}
    buf.add_task(2, *_task([2, 3]))
    assert len(buf) == 100 and set(buf.counts().values()) == {25}
    buf.add_task(3, *_task([4, 5]))
    assert len(buf) <= 100 and set(buf.counts().values()) == {16}


def test_shrinking_keeps_a_subset_of_what_was_held():
    buf = ReplayBuffer(40, torch.Generator().manual_seed(0))
    x, y = _task([0, 1])
    buf.add_task(1, x, y)
    before = {tuple(r.tolist()) for r in buf.x}
    buf.add_task(2, *_task([2, 3]))
    after = {tuple(r.tolist()) for r, c in zip(buf.x, buf.y) if c < 2}
    assert after <= before and len(after) == 20


def test_domain_incremental_groups_by_task_and_class():
    buf = ReplayBuffer(60, torch.Generator().manual_seed(0))
    buf.add_task(1, *_task([0, 1, 2]))
    buf.add_task(2, *_task([0, 1, 2]))
    assert buf.counts() == {(t, c): 10 for t in (1, 2) for c in (0, 1, 2)}


def test_buffer_is_deterministic_given_the_generator():
    a, b = (ReplayBuffer(30, torch.Generator().manual_seed(5)) for _ in range(2))
    x, y = _task([0, 1])
    a.add_task(1, x, y)
    b.add_task(1, x, y)
    assert torch.equal(a.x, b.x)


def test_index_sampler_covers_each_epoch_once():
    s = IndexSampler(10, 4, torch.Generator().manual_seed(0))
    epoch = torch.cat([s.next() for _ in range(3)])
    assert sorted(epoch.tolist()) == list(range(10)) and s.batches_per_epoch() == 3
