"""runtime.data.loader.BatchLoader: shapes, coverage, epochs, resumability, DDP sharding."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from runtime.data.augment import AugmentConfig, eval_batch
from runtime.data.folders import ImageSet, load_images
from runtime.data.loader import BatchLoader
from runtime.data.synth import write_synthetic

N, S, OUT = 60, 20, 16


@pytest.fixture(scope="module")
def images() -> ImageSet:
    """Random pixels; label = row index, so y tells exactly which rows a batch holds."""
    rng = np.random.default_rng(0)
    return ImageSet(rng.integers(0, 256, (N, S, S, 3), dtype=np.uint8), np.arange(N), ["x"])


def _epoch(loader: BatchLoader, epoch: int | None = None):
    if epoch is not None:
        loader.set_epoch(epoch)
    xs, ys = zip(*list(loader))
    return list(xs), list(ys)


def test_batch_shapes_and_len(images):
    idx = np.arange(5, 55)  # 50 samples
    loader = BatchLoader(images, idx, 16, train=True, out_size=OUT)
    xs, ys = _epoch(loader)
    assert len(loader) == len(xs) == 4
    assert [x.shape for x in xs] == [(16, 3, OUT, OUT)] * 3 + [(2, 3, OUT, OUT)]
    assert all(x.dtype == torch.float32 and y.dtype == torch.int64 for x, y in zip(xs, ys))
    assert all(x.device.type == "cpu" for x in xs)
    dropped = BatchLoader(images, idx, 16, train=True, out_size=OUT, drop_last=True)
    assert len(dropped) == 3 and len(list(dropped)) == 3


def test_every_index_once_per_epoch_and_order_changes(images):
    idx = np.arange(3, 50)
    loader = BatchLoader(images, idx, 8, train=True, out_size=OUT, seed=3)
    orders = []
    for e in range(3):
        _, ys = _epoch(loader, e)
        y = torch.cat(ys).numpy()
        np.testing.assert_array_equal(np.sort(y), idx)  # each index exactly once
        orders.append(y)
    assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[1], orders[2])
    assert not np.array_equal(orders[0], idx)  # shuffled


def test_eval_is_in_order_and_unaugmented(images):
    idx = np.array([7, 3, 40, 41, 12])
    loader = BatchLoader(images, idx, 2, train=False, out_size=OUT)
    for e in range(2):
        xs, ys = _epoch(loader, e)
        np.testing.assert_array_equal(torch.cat(ys).numpy(), idx)
        expect = eval_batch(torch.from_numpy(images.images[idx]), OUT, AugmentConfig())
        torch.testing.assert_close(torch.cat(xs), expect)


def test_train_batches_match_labels_and_pixels(images):
    """The x rows are the augmented images of the y rows (checked with an identity config)."""
    ident = AugmentConfig(scale=(1, 1), ratio=(1, 1), rotation=0.0, hflip=0.0)
    loader = BatchLoader(images, np.arange(N), 7, train=True, out_size=S, aug=ident)
    for x, y in loader:
        expect = eval_batch(torch.from_numpy(images.images[y.numpy()]), S, ident)
        torch.testing.assert_close(x, expect, atol=1e-4, rtol=0)


def test_set_epoch_reproduces_an_epoch_and_resumes(images):
    idx = np.arange(N)
    a = BatchLoader(images, idx, 10, train=True, out_size=OUT, seed=11)
    xs1, ys1 = _epoch(a, 2)
    _epoch(a, 3)
    xs2, ys2 = _epoch(a, 2)
    assert all(torch.equal(u, v) for u, v in zip(xs1, xs2))
    assert all(torch.equal(u, v) for u, v in zip(ys1, ys2))
    # a fresh loader restored from state_dict continues identically (resume)
    a.set_epoch(5)
    state = a.state_dict()
    assert state == {"epoch": 5, "seed": 11}
    b = BatchLoader(images, idx, 10, train=True, out_size=OUT, seed=0)
    b.load_state_dict(state)
    xa, ya = _epoch(a)
    xb, yb = _epoch(b)
    assert all(torch.equal(u, v) for u, v in zip(xa, xb))
    assert all(torch.equal(u, v) for u, v in zip(ya, yb))
    # augmentation differs between epochs even for the same sample
    c = BatchLoader(images, idx[:1], 1, train=True, out_size=OUT, seed=11)
    assert not torch.equal(_epoch(c, 0)[0][0], _epoch(c, 1)[0][0])
    # and a different seed gives a different order
    d = BatchLoader(images, idx, 10, train=True, out_size=OUT, seed=12)
    d.set_epoch(2)
    assert not np.array_equal(torch.cat(_epoch(d)[1]).numpy(), torch.cat(ys1).numpy())


def test_prefetch_does_not_change_results(images):
    kw = {"batch_size": 6, "train": True, "out_size": OUT, "seed": 4}
    a = _epoch(BatchLoader(images, np.arange(N), prefetch=True, **kw), 1)
    b = _epoch(BatchLoader(images, np.arange(N), prefetch=False, **kw), 1)
    assert all(torch.equal(u, v) for u, v in zip(a[0], b[0]))
    assert all(torch.equal(u, v) for u, v in zip(a[1], b[1]))
    # stopping early and iterating again is fine
    loader = BatchLoader(images, np.arange(N), prefetch=True, **kw)
    for i, _ in enumerate(loader):
        if i == 1:
            break
    assert len(list(loader)) == len(loader)


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("rank,world", [(0, 1), (1, 2)])
def test_a_resident_loader_gives_the_streaming_loaders_batches(images, train, rank, world):
    """The resident branch (the GPU's, here on the CPU) gathers by index_select on one tensor;
    the streaming branch gathers numpy rows in a thread. Same indices, same pixels."""
    kw = {"batch_size": 7, "train": train, "out_size": OUT, "seed": 3, "rank": rank,
          "world_size": world}
    streamed = BatchLoader(images, np.arange(N), resident=False, **kw)
    resident = BatchLoader(images, np.arange(N), resident=True, **kw)
    assert resident.resident and not streamed.resident
    assert not BatchLoader(images, np.arange(N), **kw).resident  # the CPU default streams
    a, b = _epoch(streamed, 2), _epoch(resident, 2)
    assert len(a[0]) == len(b[0]) == len(streamed)
    for (xa, ya), (xb, yb) in zip(zip(*a), zip(*b)):
        assert torch.equal(ya, yb) and torch.equal(xa, xb)
    # loaders over the same array share one resident copy
    again = BatchLoader(images, np.arange(N), resident=True, **kw)
    assert again._resident_images is resident._resident_images


def test_a_resident_loader_reads_a_memmap_cache_into_memory(tmp_path):
    root = write_synthetic(tmp_path / "d", n=12, seed=1, size=((50, 90), (40, 80)))
    ims = load_images(root, size=24, cache_dir=tmp_path / "cache", workers=1)
    assert isinstance(ims.images, np.memmap) and not ims.images.flags.writeable
    loader = BatchLoader(ims, np.arange(len(ims)), 4, train=True, out_size=16, resident=True)
    assert torch.equal(loader._resident_images, torch.from_numpy(np.array(ims.images)))
    xs, ys = _epoch(loader, 0)
    assert torch.cat(ys).sort().values.tolist() == sorted(ims.labels.tolist())


@pytest.mark.parametrize("n,world", [(48, 2), (47, 2), (50, 3), (7, 4)])
def test_ranks_concatenate_to_the_single_process_batch(images, n, world):
    """Concatenating the ranks' batch k (rank 0 first) == single-process batch k with
    batch_size = per-rank batch * world_size: same indices, same order, same pixels."""
    per_rank = 4
    idx = np.arange(N - n, N)
    kw = {"train": True, "out_size": OUT, "seed": 9}
    single = BatchLoader(images, idx, per_rank * world, **kw)
    ranks = [BatchLoader(images, idx, per_rank, rank=r, world_size=world, **kw)
             for r in range(world)]
    single.set_epoch(1)
    for r in ranks:
        r.set_epoch(1)
    sx, sy = _epoch(single)
    per = [_epoch(r) for r in ranks]
    assert all(len(r) == len(single) for r in ranks)  # every rank runs the same number of steps
    seen = []
    for k in range(len(single)):
        xs = [p[0][k] for p in per]
        ys = [p[1][k] for p in per]
        assert len({len(y) for y in ys}) == 1  # equal per-rank batch sizes, also in the last batch
        cx, cy = torch.cat(xs), torch.cat(ys)
        m = len(sy[k])
        assert torch.equal(cy[:m], sy[k])
        assert torch.equal(cx[:m], sx[k])  # identical augmented pixels
        assert set(cy[m:].tolist()) <= set(idx.tolist())  # padding wraps around the dataset
        for r in range(world):  # ranks are disjoint within a batch (apart from padding)
            for q in range(r + 1, world):
                common = set(ys[r].tolist()) & set(ys[q].tolist())
                assert not common - set(cy[m:].tolist())
        seen.extend(cy[:m].tolist())
    assert sorted(seen) == sorted(idx.tolist())


def test_drop_last_with_ranks(images):
    idx = np.arange(50)
    ranks = [BatchLoader(images, idx, 4, True, OUT, rank=r, world_size=3, drop_last=True)
             for r in range(3)]
    ys = [torch.cat(_epoch(r)[1]) for r in ranks]
    assert all(len(r) == 4 for r in ranks)  # 4 full global batches of 12 (2 samples dropped)
    assert all(len(y) == 16 for y in ys)
    allv = torch.cat(ys).tolist()
    assert len(set(allv)) == 48


def test_bad_arguments(images):
    with pytest.raises(ValueError):
        BatchLoader(images, np.arange(4), 0, True, OUT)
    with pytest.raises(ValueError):
        BatchLoader(images, np.arange(4), 2, True, OUT, rank=2, world_size=2)
    with pytest.raises(IndexError):
        BatchLoader(images, np.array([N]), 2, True, OUT)
    assert len(BatchLoader(images, np.arange(0), 2, True, OUT)) == 0
    assert list(BatchLoader(images, np.arange(0), 2, True, OUT)) == []


def test_end_to_end_with_a_memmap_cache(tmp_path):
    root = write_synthetic(tmp_path / "d", n=20, seed=0, size=((50, 90), (40, 80)))
    ims = load_images(root, size=24, cache_dir=tmp_path / "cache", workers=1)
    assert isinstance(ims.images, np.memmap)
    loader = BatchLoader(ims, np.arange(len(ims)), 8, train=True, out_size=16, seed=1)
    xs, ys = _epoch(loader, 0)
    assert torch.cat(ys).sort().values.tolist() == sorted(ims.labels.tolist())
    assert torch.isfinite(torch.cat(xs)).all()
    # the normalised pixels are in a sane range (0..255 mapped through ImageNet stats)
    assert torch.cat(xs).min() >= -2.2 and torch.cat(xs).max() <= 2.7


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_loader_matches_cpu(images):  # pragma: no cover - runs where a GPU exists
    kw = {"batch_size": 8, "train": True, "out_size": OUT, "seed": 2}
    cpu = _epoch(BatchLoader(images, np.arange(N), device="cpu", **kw), 1)
    gpu_loader = BatchLoader(images, np.arange(N), device="cuda", **kw)
    assert gpu_loader.resident  # small: resident on the GPU by default
    gpu = _epoch(gpu_loader, 1)
    for (xc, yc), (xg, yg) in zip(zip(*cpu), zip(*gpu)):
        assert xg.device.type == "cuda" and yg.device.type == "cuda"
        assert torch.equal(yg.cpu(), yc)
        torch.testing.assert_close(xg.cpu(), xc, atol=1e-3, rtol=0)
