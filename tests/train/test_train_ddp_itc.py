"""ITC under DDP: 2 gloo processes x batch 16 give the loss and gradients of 1 process x batch 32."""

from __future__ import annotations

import functools

import torch
from torch import nn

from amfmedit.models.losses import itc_loss
from amfmedit.train.tasks import global_contrastive_loss

N, D_IMG, D_TAB, D_PROJ, WORLD = 32, 10, 6, 8, 2
LOSS = functools.partial(itc_loss, temperature=0.1)


class _Pair(nn.Module):
    """Tiny linear 'encoders + projections' for the two modalities."""

    def __init__(self) -> None:
        super().__init__()
        self.img = nn.Linear(D_IMG, D_PROJ)
        self.tab = nn.Linear(D_TAB, D_PROJ)

    def forward(self, x_img, x_tab):
        return self.img(x_img), self.tab(x_tab)


def _inputs():
    g = torch.Generator().manual_seed(0)
    return torch.randn(N, D_IMG, generator=g), torch.randn(N, D_TAB, generator=g)


def _model():
    torch.manual_seed(1)
    return _Pair()


def _rank(rank: int, init: str, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=WORLD)
    try:
        model = nn.parallel.DistributedDataParallel(_model())
        x_img, x_tab = _inputs()
        mine = slice(rank * N // WORLD, (rank + 1) * N // WORLD)
        z_img, z_tab = model(x_img[mine], x_tab[mine])
        local = LOSS(z_img.detach(), z_tab.detach())  # what each rank computed before: its own 16 pairs only
        loss = global_contrastive_loss(LOSS, z_img, z_tab)
        loss.backward()
        torch.save({"loss": loss.detach(), "local": local,
                    "grads": {k: p.grad.clone() for k, p in model.module.named_parameters()}}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ddp_itc_equals_single_process_at_the_global_batch(tmp_path):
    import torch.multiprocessing as mp

    init = f"file://{tmp_path / 'rendezvous'}"
    mp.spawn(_rank, args=(init, str(tmp_path)), nprocs=WORLD, join=True)

    model = _model()
    x_img, x_tab = _inputs()
    loss = global_contrastive_loss(LOSS, *model(x_img, x_tab))  # one process: the plain ITC loss
    assert torch.equal(loss, LOSS(*model(x_img, x_tab)))
    loss.backward()
    for rank in range(WORLD):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        torch.testing.assert_close(got["loss"], loss.detach(), rtol=1e-6, atol=1e-7)
        # without gathering, each rank saw 15 negatives instead of 31: a different objective
        assert abs(float(got["local"]) - float(loss.detach())) > 1e-2
        for name, p in model.named_parameters():
            torch.testing.assert_close(got["grads"][name], p.grad, rtol=1e-5, atol=1e-7, msg=name)
