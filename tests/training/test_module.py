"""The LightningModule: metric updates under deterministic mode, the device-side batch, memory format."""

import lightning as L
import torch

from cocoseg.models.preprocessing import Preprocessing
from cocoseg.training.module import SegmentationModule, build_metrics, exact_counting


def test_exact_counting_matches_native_counts_and_restores_deterministic_mode(monkeypatch) -> None:
    torch.manual_seed(0)
    pred = torch.randint(0, 5, (2, 16, 16))
    target = torch.randint(0, 5, (2, 16, 16))
    target[:, :3] = 255
    reference = build_metrics(5, "val/")
    reference.update(pred, target)

    fallback_used = []
    real_eq = torch.eq
    monkeypatch.setattr(torch, "eq", lambda *a, **k: fallback_used.append(1) or real_eq(*a, **k))
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        metrics = build_metrics(5, "val/")
        with exact_counting():
            assert not torch.are_deterministic_algorithms_enabled()
            metrics.update(pred, target)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.use_deterministic_algorithms(False)
    assert not fallback_used  # the (pixels x classes^2) comparison fallback was never taken
    assert {k: float(v) for k, v in metrics.compute().items()} == {
        k: float(v) for k, v in reference.compute().items()
    }


def uint8_batch(n: int = 2, h: int = 8, w: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return torch.randint(0, 256, (n, h, w, 3), dtype=torch.uint8), torch.randint(
        0, 3, (n, h, w), dtype=torch.uint8
    )


def test_prepare_batch_normalises_as_inference_does() -> None:
    images, target = uint8_batch()
    x, y = SegmentationModule("fastscnn", 3).prepare_batch((images, target))
    expected = Preprocessing((8, 12)).normalise(images.permute(0, 3, 1, 2).contiguous())
    assert x.dtype == torch.float32 and x.shape == (2, 3, 8, 12) and x.is_contiguous()
    assert torch.equal(x, expected)  # the inference path's numbers, bit for bit
    assert y.dtype == torch.int64 and torch.equal(y, target.long())


def test_channels_last_for_input_and_weights() -> None:
    module = SegmentationModule("unet", 3, channels_last=True)
    x, _ = module.prepare_batch(uint8_batch(h=32, w=32))
    assert x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    convs = [m.weight for m in module.modules() if isinstance(m, torch.nn.Conv2d) and m.weight.shape[-1] > 1]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    assert all(
        w.is_contiguous()
        for w in (m.weight for m in SegmentationModule("unet", 3).modules() if isinstance(m, torch.nn.Conv2d))
    )
    # the same numbers either way: only the memory order differs
    reference = SegmentationModule("unet", 3)
    reference.load_state_dict(module.state_dict())
    with torch.no_grad():
        assert torch.allclose(module.eval()(x), reference.eval()(x.contiguous()), atol=1e-5)


def test_compiled_network_keeps_the_state_dict_keys() -> None:
    plain, compiled = SegmentationModule("fastscnn", 3), SegmentationModule("fastscnn", 3, compile=True)
    assert compiled.network is not compiled.model and plain.network is plain.model
    assert list(compiled.state_dict()) == list(plain.state_dict())  # no "_orig_mod." prefix in checkpoints


def test_lightning_feeds_training_step_the_prepared_batch() -> None:
    """Lightning calls on_after_batch_transfer between the DataLoader and training_step."""
    seen = []
    module = SegmentationModule("fastscnn", 3)
    module.training_step = lambda batch, *_: seen.append(batch) or module.loss(module(batch[0]), batch[1])
    module.configure_optimizers = lambda: torch.optim.SGD(module.parameters(), lr=0.01)
    trainer = L.Trainer(
        max_steps=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(*uint8_batch(h=32, w=32)), batch_size=2
    )
    trainer.fit(module, train_dataloaders=loader)
    ((images, target),) = seen
    assert images.dtype == torch.float32 and images.shape == (2, 3, 32, 32) and target.dtype == torch.int64
