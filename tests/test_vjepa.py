"""V-JEPA + 3-D localisation (seed 003): Eqs. 1–4 on hand-made tensors, masks, EMA, frozen blocks, the public
checkpoint key map, bad input and the CLI on SynthEcho."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json

import numpy as np
import pytest
import torch
from test_cli_errors import run_cli
from test_end_to_end import TINY, run_json

from echobench.api import TrainState
from echobench.errors import UserError
from echobench.init_weights import load_init_weights
from echobench.validate import TINY as VALIDATE_TINY
from echobench.validate import _train, tiny_batch
from echobench_plugins.vjepa import VJEPA, VJEPAConfig, VJEPAPlain
from echobench_plugins.vjepa.losses import (
    combined_loss,
    jepa_loss,
    localisation_loss,
    localisation_targets,
    sample_pairs,
)

SMALL = {**VALIDATE_TINY, "predictor_depth": 2}
#: The end-to-end TINY settings without protocol settings, which wrappers (label sweeps) do not take.
MODEL = [arg for pair in zip(TINY[0::2], TINY[1::2], strict=True) for arg in pair if "ci_resamples" not in pair[1]]


def small(**changes: object) -> VJEPA:
    torch.manual_seed(0)
    return VJEPA(dataclasses.replace(VJEPAConfig(), **(SMALL | changes)))


def test_localisation_targets_are_index_differences_over_grid_sizes() -> None:
    grid = (3, 4, 5)
    pairs = list(itertools.permutations(range(60), 2))
    idx1 = torch.tensor([[a for a, _ in pairs]])
    idx2 = torch.tensor([[b for _, b in pairs]])
    delta = localisation_targets(idx1, idx2, grid)
    expected = []
    for a, b in pairs:
        ta, ia, ja = a // 20, (a % 20) // 5, a % 5
        tb, ib, jb = b // 20, (b % 20) // 5, b % 5
        expected.append([(ta - tb) / 3, (ia - ib) / 4, (ja - jb) / 5])
    assert delta.shape == (1, len(pairs), 3) and delta.dtype == torch.float32
    np.testing.assert_allclose(delta[0].numpy(), np.array(expected), rtol=0, atol=1e-7)
    assert bool((delta > -1).all()) and bool((delta < 1).all())
    assert float(delta.abs().max()) == pytest.approx(4 / 5)  # j from 4 to 0 over W' = 5
    with pytest.raises(ValueError, match=r"\[0, 60\)"):
        localisation_targets(torch.tensor([[60]]), torch.tensor([[0]]), grid)


def test_localisation_loss_is_eq3_sum_over_components_mean_over_pairs() -> None:
    pred = torch.tensor([[[0.5, -0.25, 0.0], [1.0, 1.0, 1.0]], [[0.0, 0.0, 0.0], [-0.5, 0.5, 0.25]]])
    target = torch.tensor([[[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]], [[0.25, -0.5, 0.75], [-0.5, 0.5, 0.25]]])
    total = 0.0
    for b in range(2):
        for p in range(2):
            total += sum((float(pred[b, p, k]) - float(target[b, p, k])) ** 2 for k in range(3))
    assert float(localisation_loss(pred, target)) == pytest.approx(total / 4)
    # 3·B·P scalars: an MSE over elements would be a third of Eq. 3.
    assert float(localisation_loss(pred, target)) == pytest.approx(
        3 * float(torch.nn.functional.mse_loss(pred, target))
    )


def test_localisation_mlp_gets_gradients_and_targets_do_not() -> None:
    mlp = torch.nn.Sequential(torch.nn.Linear(8, 6), torch.nn.GELU(), torch.nn.Linear(6, 3))
    embeddings = torch.randn(2, 5, 8, requires_grad=True)
    target = torch.rand(2, 5, 3, requires_grad=True)
    localisation_loss(mlp(embeddings), target).backward()
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in mlp.parameters())
    assert embeddings.grad is not None and target.grad is None
    # In the method: the localiser and the predictor train through L_ll; Δ comes from integer indices.
    method = small(lambda_ll=0.0)
    method.train()
    batch = tiny_batch(method.clip_spec(), 2, 1)
    out = method.pretrain_step(batch, TrainState.at(0, 5, 10))
    out.loss.backward()
    assert out.terms.keys() == {"jepa", "localisation"}
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in method.localiser.parameters())
    assert method.predictor.embed.weight.grad is not None
    assert all(p.grad is None for p in method.encoder.parameters())


def test_jepa_loss_is_l1_to_layer_normed_detached_targets() -> None:
    pred = torch.tensor([[[1.0, 2.0, 0.0, -1.0]]], requires_grad=True)
    target = torch.tensor([[[2.0, 4.0, 6.0, 8.0]]], requires_grad=True)
    values = np.array([2.0, 4.0, 6.0, 8.0])
    normed = (values - values.mean()) / np.sqrt(values.var() + 1e-5)
    expected = np.abs(np.array([1.0, 2.0, 0.0, -1.0]) - normed).mean()
    loss = jepa_loss(pred, target)
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert target.grad is None and pred.grad is not None


def test_eq4_weights_jepa_by_lambda() -> None:
    assert float(combined_loss(torch.tensor(2.0), torch.tensor(10.0), 0.25)) == pytest.approx(0.25 * 2 + 0.75 * 10)
    assert float(combined_loss(torch.tensor(2.0), torch.tensor(10.0), 1.0)) == 2.0


def test_pairs_are_distinct_and_cover_every_position() -> None:
    first, second = sample_pairs(3, 4, 2000, torch.Generator().manual_seed(0))
    assert first.shape == second.shape == (3, 2000)
    assert bool((first != second).all())
    assert set(first.flatten().tolist()) == set(second.flatten().tolist()) == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="two masked tokens"):
        sample_pairs(1, 1, 5, torch.Generator())


def test_each_generator_predicts_its_own_targets_disjoint_from_its_context() -> None:
    method = small(frames=8)  # grid (4, 4, 4)
    context_masks, predicted_masks = [], []
    method.context_encoder.register_forward_pre_hook(
        lambda _m, args, kwargs: context_masks.append(kwargs["mask"]), with_kwargs=True
    )
    method.predictor.register_forward_pre_hook(lambda _m, args: predicted_masks.append(args[1]))
    torch.manual_seed(3)
    method.pretrain_step(tiny_batch(method.clip_spec(), 4, 1), TrainState.at(0, 5, 10))
    assert len(context_masks) == len(predicted_masks) == 2  # 8 × 0.15 and 2 × 0.7: one prediction each
    for context, predicted in zip(context_masks, predicted_masks, strict=True):
        visible = ~context
        assert torch.equal(predicted, context)  # the predictor fills exactly what the encoder did not see
        assert not bool((visible & predicted).any()) and bool(visible.any(dim=1).all())
        assert bool((predicted.sum(dim=1) >= 2).all())
    assert context_masks[0].sum() < context_masks[1].sum()  # short-range masks are smaller than long-range ones


def test_ema_schedule_endpoints_and_update() -> None:
    method = small()
    assert method.ema_momentum(TrainState.at(0, 5, 10)) == pytest.approx(0.998)
    assert method.ema_momentum(TrainState.at(5, 5, 10)) == pytest.approx(0.999)
    assert method.ema_momentum(TrainState.at(10, 5, 10)) == 1.0
    teacher = copy.deepcopy(method.encoder.state_dict())
    with torch.no_grad():
        for p in method.context_encoder.parameters():
            p.add_(1.0)
    method.after_step(TrainState.at(0, 5, 10))
    student = method.context_encoder.state_dict()
    for name, value in method.encoder.state_dict().items():
        torch.testing.assert_close(value, 0.998 * teacher[name] + 0.002 * student[name])
    before = copy.deepcopy(method.encoder.state_dict())
    method.after_step(TrainState.at(10, 5, 10))
    assert all(torch.equal(v, before[k]) for k, v in method.encoder.state_dict().items())


def test_frozen_blocks_do_not_change_during_pretraining(tmp_path) -> None:
    method = small(freeze_blocks=2)
    start = copy.deepcopy(method.state_dict())
    end = _train(method, tmp_path, 2, 1, None)  # three steps of the harness's loop, weight decay 0.04 → 0.4
    frozen = ("patch_embed.", "blocks.0.", "blocks.1.")
    for prefix in ("context_encoder.", "encoder."):
        names = [k for k in start if k.startswith(prefix)]
        for name in names:
            if name.removeprefix(prefix).startswith(frozen):
                assert torch.equal(end[name], start[name]), name
        moved = [
            n for n in names if n.removeprefix(prefix).startswith("blocks.2.") and not torch.equal(end[n], start[n])
        ]
        assert moved, f"{prefix}blocks.2 should train"


def vjepa_layout(method: VJEPA, seed: int, rgb: bool = True) -> dict[str, torch.Tensor]:
    """An encoder state dict in the public V-JEPA layout (``src/models/vision_transformer.py`` names), random."""
    generator = torch.Generator().manual_seed(seed)
    encoder = method.context_encoder
    dim, (t, h, w) = encoder.embed_dim, encoder.grid
    channels = 3 if rgb else 1
    names = {
        "patch_embed.proj.weight": (dim, channels, encoder.tubelet, encoder.patch, encoder.patch),
        "patch_embed.proj.bias": (dim,),
        "pos_embed": (1, t * h * w, dim),
        "norm.weight": (dim,),
        "norm.bias": (dim,),
    }
    for i in range(len(encoder.blocks)):
        for part, shape in {
            "norm1": (dim,),
            "attn.qkv": (3 * dim, dim),
            "attn.proj": (dim, dim),
            "norm2": (dim,),
            "mlp.fc1": (4 * dim, dim),
            "mlp.fc2": (dim, 4 * dim),
        }.items():
            names[f"blocks.{i}.{part}.weight"] = shape
            names[f"blocks.{i}.{part}.bias"] = (shape[0],)
    return {f"module.backbone.{k}": torch.randn(shape, generator=generator) for k, shape in names.items()}


def test_public_vjepa_checkpoint_loads_with_no_missing_or_unexpected_encoder_keys(tmp_path) -> None:
    method = small()
    encoder, target = vjepa_layout(method, 0), vjepa_layout(method, 1)
    dim, width = method.context_encoder.embed_dim, method.predictor.embed.out_features
    predictor = {
        "module.backbone.predictor_embed.weight": torch.randn(width, dim),
        "module.backbone.mask_tokens.0": torch.randn(1, 1, width),
        "module.backbone.mask_tokens.1": torch.randn(1, 1, width),
        "module.backbone.predictor_pos_embed": torch.randn(1, 32, width),
        "module.backbone.predictor_proj.bias": torch.randn(dim),
    }
    path = tmp_path / "vitl16.pth.tar"
    torch.save(
        {
            "encoder": encoder,
            "predictor": predictor,
            "target_encoder": target,
            "opt": {"state": {0: {"exp_avg": torch.ones(3)}}},
            "epoch": 300,
        },
        path,
    )
    mapped = method.map_init_weights(load_flat(path))
    own = method.state_dict()
    for prefix in ("context_encoder.", "encoder."):
        assert {k for k in mapped if k.startswith(prefix)} == {k for k in own if k.startswith(prefix)}
    info = load_init_weights(method, path, "method 'vjepa'", method.map_init_weights)
    assert info["loaded"] == len(mapped)
    state = method.state_dict()
    assert torch.equal(
        state["context_encoder.blocks.3.attn.qkv.weight"], encoder["module.backbone.blocks.3.attn.qkv.weight"]
    )
    assert torch.equal(state["encoder.norm.bias"], target["module.backbone.norm.bias"])
    rgb = encoder["module.backbone.patch_embed.proj.weight"]
    torch.testing.assert_close(state["context_encoder.patch_embed.weight"], rgb.sum(dim=1, keepdim=True))
    assert torch.equal(state["predictor.mask_token"], predictor["module.backbone.mask_tokens.0"])
    assert torch.equal(state["predictor.head.bias"], predictor["module.backbone.predictor_proj.bias"])


def test_a_file_with_one_encoder_starts_both_encoders(tmp_path) -> None:
    method = small()
    encoder = vjepa_layout(method, 0, rgb=False)
    path = tmp_path / "encoder_only.pt"
    torch.save({"target_encoder": encoder}, path)
    load_init_weights(method, path, "method 'vjepa'", method.map_init_weights)
    for prefix in ("context_encoder", "encoder"):
        weight = method.state_dict()[f"{prefix}.blocks.0.mlp.fc1.weight"]
        assert torch.equal(weight, encoder["module.backbone.blocks.0.mlp.fc1.weight"])


def test_a_checkpoint_of_another_depth_is_a_user_error_naming_init_from() -> None:
    method = small()
    shallow = {
        f"encoder.{k}": v for k, v in vjepa_layout(method, 0).items() if not k.startswith("module.backbone.blocks.11.")
    }
    with pytest.raises(UserError, match=r"^pretrain\.init_from: .* such as 'context_encoder\.blocks\.11\."):
        method.map_init_weights(shallow)


def load_flat(path) -> dict[str, torch.Tensor]:
    from echobench.init_weights import read_weights

    return read_weights(path)


def test_bad_configs_are_value_errors_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"^method\.lambda_ll must be in \[0, 1\]"):
        small(lambda_ll=1.5)
    with pytest.raises(ValueError, match=r"^method\.freeze_blocks=13 exceeds the 12-block encoder"):
        small(freeze_blocks=13)
    with pytest.raises(ValueError, match=r"^method\.lambda_ll=0\.25 needs two masked tokens"):
        small(frames=2, size=16)  # grid (1, 2, 2)
    assert small(frames=2, size=16, lambda_ll=1.0).localiser is None  # plain V-JEPA needs no pairs
    assert VJEPAPlain(VJEPAPlain.Config(**SMALL)).localiser is None


def test_one_predicted_token_is_a_user_error_naming_the_field() -> None:
    method = small()
    mask = torch.zeros(2, 32, dtype=torch.bool)
    mask[:, 5] = True
    with pytest.raises(UserError, match=r"^method\.lambda_ll=0\.25: the mask of scale 0\.15 predicts 1 token"):
        method._localisation(torch.zeros(2, 1, 192), mask, torch.Generator(), 0.15)


@pytest.mark.parametrize(
    "settings, message",
    [
        (["method.lambda_ll=-0.1"], "error: method config of 'vjepa' rejected: method.lambda_ll must be in [0, 1]"),
        (
            ["method.freeze_blocks=20"],
            "error: method config of 'vjepa' rejected: method.freeze_blocks=20 exceeds the 12-block encoder",
        ),
        (["pretrain.init_from=WRONG"], "error: pretrain.init_from"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(
    monkeypatch, capsys, synth_root, isolated_home, tmp_path, settings, message
) -> None:
    wrong = tmp_path / "vits16.pt"
    torch.save({"encoder": vjepa_layout(small(model="vit_small"), 0)}, wrong)  # ViT-S weights for a ViT-T
    args = ["run", "--method", "vjepa", "--data-root", str(synth_root), "--set", "method.model=vit_tiny"]
    args += ["--set", "method.frames=4", "--set", "method.size=32", "--set", "method.patch=8"]
    for item in settings:
        args += ["--set", item.replace("WRONG", str(wrong))]
    code, out, err = run_cli(monkeypatch, capsys, *args)
    # The error is the last line: progress bars of the data decoding may precede it.
    assert code == 2 and err.strip().splitlines()[-1].startswith(message) and "Traceback" not in err
    assert out == "" and not (isolated_home / "checkpoints").exists()


def test_cli_vjepa_knn_linear_and_segmentation_on_synthecho(monkeypatch, capsys, synth_root, isolated_home) -> None:
    common = ["--set", "pretrain.steps=2", "--set", "method.predictor_depth=2"]
    ci = ["--set", "protocol.ci_resamples=20"]
    protocols = {
        "knn": ["--set", "protocol.ks=[1]"],
        "linear": ["--set", "protocol.epochs=3"],
        "segmentation": ["--set", "protocol.epochs=2"],
        "segmentation-vjepa": ["--set", "protocol.epochs=2"],
    }
    runs = {
        name: run_json(monkeypatch, capsys, synth_root, "vjepa", *common, *ci, *extra, protocol=name, settings=MODEL)
        for name, extra in protocols.items()
    }
    assert len({run["checkpoint_hash"] for run in runs.values()}) == 1  # pretrained once
    assert all(run["metrics"] for run in runs.values())
    seg = runs["segmentation-vjepa"]
    assert seg["task"] == runs["segmentation"]["task"] == "lv_seg"
    assert {"dice", "dice_sd", "iou", "iou_sd", "ppv", "ppv_sd", "recall", "recall_sd"} <= set(seg["metrics"])
    record = json.loads(open(seg["result_path"]).read())
    assert record["protocol"] == "segmentation-vjepa"
    sweep = run_json(
        monkeypatch,
        capsys,
        synth_root,
        "vjepa",
        *common,
        "--set",
        "protocol.inner_config={epochs: 1, ci_resamples: 0}",
        protocol="segmentation-vjepa-sweep",
        settings=MODEL,
    )
    assert [row["fraction"] for row in sweep["summary"]] == [0.1, 0.2, 0.5, 1.0]
    assert all(f"dice@{f:g}" in sweep["metrics"] for f in (0.1, 0.2, 0.5, 1.0))
