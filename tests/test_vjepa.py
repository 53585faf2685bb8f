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


def test_each_generator_predicts_its_own_targets_and_never_sees_them_at_any_time() -> None:
    method = small(frames=8)  # grid (4, 4, 4)
    hidden_masks, predictor_args = [], []
    method.context_encoder.register_forward_pre_hook(
        lambda _m, args, kwargs: hidden_masks.append(kwargs["mask"]), with_kwargs=True
    )
    method.predictor.register_forward_hook(lambda _m, args, out: predictor_args.append((*args[1:], out.shape)))
    t, h, w = method.context_encoder.grid
    for seed in range(10):
        hidden_masks.clear()
        predictor_args.clear()
        torch.manual_seed(seed)
        method.pretrain_step(tiny_batch(method.clip_spec(), 4, 1), TrainState.at(0, 5, 10))
        assert len(hidden_masks) == len(predictor_args) == 2  # 8 × 0.15 and 2 × 0.7: one prediction each
        for generator, (hidden, (context, predicted, index, shape)) in enumerate(
            zip(hidden_masks, predictor_args, strict=True)
        ):
            assert index == generator  # each generator its own mask token
            assert torch.equal(hidden, ~context)  # the encoder sees exactly the context
            assert shape[:2] == (4, int(predicted[0].sum()))  # one prediction per predicted token
            assert len(set(context.sum(dim=1).tolist())) == len(set(predicted.sum(dim=1).tolist())) == 1
            assert bool(context.any(dim=1).all()) and bool((predicted.sum(dim=1) >= 2).all())
            # Blocks span all t': a predicted (i, j) is never visible at any t' (the main branch leaked these).
            seen_where = context.reshape(4, t, h * w).any(dim=1)
            predicted_where = predicted.reshape(4, t, h * w).any(dim=1)
            assert not bool((seen_where & predicted_where).any())


def test_predictor_attends_over_context_and_predicted_tokens_only() -> None:
    method = small(frames=8)
    predictor = method.predictor
    assert [tuple(p.shape) for p in predictor.mask_tokens] == [(1, 1, predictor.embed.out_features)] * 2
    assert all(not bool(p.any()) for p in predictor.mask_tokens)  # zero-initialised, as V-JEPA's code
    context = torch.zeros(2, 64, dtype=torch.bool)
    predicted = torch.zeros(2, 64, dtype=torch.bool)
    context[:, :5] = True
    predicted[:, 10:13] = True
    tokens = torch.randn(2, 5, method.context_encoder.embed_dim)
    torch.nn.init.normal_(predictor.mask_tokens[1])
    out = [predictor(tokens, context, predicted, index) for index in (0, 1)]
    assert out[0].shape == (2, 3, method.context_encoder.embed_dim)
    assert not torch.allclose(out[0], out[1])  # the mask token of generator 1 is its own
    # A token neither seen nor predicted takes no part: the output is the same as a pure (context + predicted)
    # transformer computed here from the predictor's parts.
    pos = predictor.pos_fixed[0]
    x = torch.cat([predictor.embed(tokens) + pos[:5], predictor.mask_tokens[0] + pos[10:13].expand(2, -1, -1)], 1)
    for block in predictor.blocks:
        x = block(x)
    torch.testing.assert_close(out[0], predictor.head(predictor.norm(x[:, 5:])))


def test_ema_schedule_endpoints_and_update() -> None:
    # V-JEPA's code: m_s = 0.998 + s·0.002 / (ipe·epochs·ipe_scale) after step s, ipe_scale 1.25.
    default = small()
    assert default.ema_momentum(TrainState.at(0, 5, 10)) == pytest.approx(0.998)
    assert default.ema_momentum(TrainState.at(5, 5, 10)) == pytest.approx(0.998 + 0.002 * 5 / 12.5)
    assert default.ema_momentum(TrainState.at(9, 5, 10)) == pytest.approx(0.99944)  # the last step: not 1.0
    method = small(ema_ipe_scale=1.0)
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
        "module.backbone.mask_tokens.2": torch.randn(1, 1, width),  # a third generator this config lacks
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
    for index in (0, 1):
        token = predictor[f"module.backbone.mask_tokens.{index}"]
        assert torch.equal(state[f"predictor.mask_tokens.{index}"], token)
    assert "predictor.mask_tokens.2" not in mapped
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
    one_token_blocks = {"frames": 2, "size": 16, "mask_scales": (0.25,), "mask_counts": (1,)}  # grid (1, 2, 2)
    with pytest.raises(ValueError, match=r"^method\.lambda_ll must be in \[0, 1\]"):
        small(lambda_ll=1.5)
    with pytest.raises(ValueError, match=r"^method\.freeze_blocks=13 exceeds the 12-block encoder"):
        small(freeze_blocks=13)
    with pytest.raises(ValueError, match=r"^method\.lambda_ll=0\.25 needs two masked tokens"):
        small(**one_token_blocks)
    assert small(**one_token_blocks, lambda_ll=1.0).localiser is None  # plain V-JEPA needs no pairs
    with pytest.raises(ValueError, match=r"^method\.ema_ipe_scale must be > 0"):
        small(ema_ipe_scale=0.0)
    geometry = r"^method\.mask_scales/mask_counts/mask_aspect: multiblock scale"
    with pytest.raises(ValueError, match=geometry + r" .* covering the whole 4x4 token frame"):
        small(mask_scales=(1.0,), mask_counts=(1,), mask_aspect=(1.0, 1.0))  # grid (2, 4, 4): a 4x4 block
    with pytest.raises(ValueError, match=geometry + r" .* empty block on the 2x2 token frame"):
        small(frames=2, size=16, lambda_ll=1.0)  # scale 0.15 of 4 tokens: int(0.6) = 0
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
