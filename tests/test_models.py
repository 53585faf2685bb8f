"""Shared models: position tables, masks, patches, the video ViT and the MAE decoder."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from echobench.errors import UserError
from echobench.models.decoder import MAEDecoder
from echobench.models.masking import (
    framewise_random_mask,
    gather_by_index,
    gather_tokens,
    masked_count,
    random_mask,
    restricted_random_mask,
    tube_mask,
)
from echobench.models.patches import normalized_pixel_targets, patchify, unpatchify
from echobench.models.pos_embed import sincos_1d, sincos_3d
from echobench.models.vit import PRESETS, VideoViT

GEOMETRY = {"img_size": 32, "frames": 4, "patch": 8, "tubelet": 2}
GRID = (2, 4, 4)
N = 32


def tiny_vit(**kwargs: object) -> VideoViT:
    torch.manual_seed(0)
    params = {"embed_dim": 32, "depth": 2, "num_heads": 2, **GEOMETRY} | kwargs
    return VideoViT(**params)  # type: ignore[arg-type]


def clip(batch: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 1, 4, 32, 32, generator=torch.Generator().manual_seed(seed))


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- positions ---------------------------------------------------------------------------------------------------


def test_sincos_1d_hand_values() -> None:
    table = sincos_1d(3, 4)
    expected = [[math.sin(p), math.cos(p), math.sin(p / 100), math.cos(p / 100)] for p in range(3)]
    np.testing.assert_allclose(table.numpy(), expected, rtol=0, atol=1e-6)


def test_sincos_1d_matches_equation() -> None:
    table = sincos_1d(7, 6)
    for p in range(7):
        for j in range(6):
            angle = p / 10000 ** (2 * (j // 2) / 6)
            assert table[p, j].item() == pytest.approx(math.sin(angle) if j % 2 == 0 else math.cos(angle), abs=1e-6)


def test_sincos_3d_split_non_uniform() -> None:
    table = sincos_3d((2, 3, 4), 16, uniform_power=False)
    t, h, w = 1, 2, 3
    row = table[t * 12 + h * 4 + w]
    omega_t = [1 / 10000 ** (k / 4) for k in range(4)]
    omega_hw = [1, 1 / 100]
    expected = (
        [math.sin(t * o) for o in omega_t]
        + [math.cos(t * o) for o in omega_t]
        + [math.sin(h * o) for o in omega_hw]
        + [math.cos(h * o) for o in omega_hw]
        + [math.sin(w * o) for o in omega_hw]
        + [math.cos(w * o) for o in omega_hw]
    )
    np.testing.assert_allclose(row.numpy(), expected, atol=1e-6)


def test_sincos_3d_uniform_power_truncates_w() -> None:
    table = sincos_3d((2, 3, 4), 14)  # each axis 2·ceil(14/6) = 6 channels, 18 truncated to 14
    w = 3
    row = table[1 * 12 + 2 * 4 + w]
    omega = [1 / 10000 ** (k / 3) for k in range(3)]
    np.testing.assert_allclose(row[12:].numpy(), [math.sin(w * o) for o in omega[:2]], atol=1e-6)
    np.testing.assert_allclose(row[:6].numpy(), [math.sin(o) for o in omega] + [math.cos(o) for o in omega], atol=1e-6)


@pytest.mark.parametrize("pos", ["sincos", "sincos_3d"])
def test_fixed_positions_are_buffers(pos: str) -> None:
    model = tiny_vit(pos=pos)
    assert not any("pos" in name for name, _ in model.named_parameters())
    assert "pos_fixed" not in model.state_dict()
    reference = sincos_1d(N, 32) if pos == "sincos" else sincos_3d(GRID, 32)
    torch.testing.assert_close(model.position_embedding()[0], reference)


def test_learned_space_time_positions() -> None:
    model = tiny_vit(pos="learned_st")
    assert model.pos_spatial is not None and model.pos_temporal is not None
    assert model.pos_spatial.shape == (1, 16, 32) and model.pos_temporal.shape == (1, 2, 32)
    assert model.pos_spatial.requires_grad and model.pos_temporal.requires_grad
    table = model.position_embedding()[0]
    torch.testing.assert_close(table[1 * 16 + 5], model.pos_spatial[0, 5] + model.pos_temporal[0, 1])
    assert model.no_weight_decay() == {"pos_spatial", "pos_temporal"}


# --- masks -------------------------------------------------------------------------------------------------------


def test_tube_mask_same_at_every_t_with_exact_count() -> None:
    mask = tube_mask(3, GRID, 0.75, gen())
    per_frame = mask.view(3, 2, 16)
    assert mask.dtype == torch.bool and mask.shape == (3, N)
    assert torch.equal(per_frame[:, 0], per_frame[:, 1])
    assert per_frame.sum(-1).eq(12).all()
    assert not torch.equal(per_frame[0, 0], per_frame[1, 0])


def test_framewise_mask_counts_and_frames_differ() -> None:
    mask = framewise_random_mask(3, (4, 4, 4), 0.6, gen())
    per_frame = mask.view(3, 4, 16)
    assert per_frame.sum(-1).eq(int(0.6 * 16)).all()
    assert not torch.equal(per_frame[0, 0], per_frame[0, 1])


def test_random_mask_exact_count() -> None:
    mask = random_mask(4, N, 0.6, gen())
    assert mask.sum(1).eq(int(0.6 * N)).all()


@pytest.mark.parametrize(
    "make",
    [
        lambda g: tube_mask(2, GRID, 0.5, g),
        lambda g: random_mask(2, N, 0.5, g),
        lambda g: framewise_random_mask(2, GRID, 0.5, g),
    ],
)
def test_masks_deterministic_per_seed(make) -> None:  # type: ignore[no-untyped-def]
    assert torch.equal(make(gen(3)), make(gen(3)))
    assert not torch.equal(make(gen(3)), make(gen(4)))


@pytest.mark.parametrize("ratio", [-0.1, 1.0])
def test_mask_ratio_validated(ratio: float) -> None:
    with pytest.raises(UserError, match="ratio"):
        random_mask(1, N, ratio, gen())


def test_restricted_mask_equal_counts_within_candidates() -> None:
    candidates = torch.zeros(2, 2, 16, dtype=torch.bool)
    candidates[0, :, :10] = True  # 10 candidates per frame
    candidates[1, 0, 2:14] = True  # 12 in frame 0
    candidates[1, 1, :8] = True  # 8 in frame 1
    candidates = candidates.view(2, N)
    km = restricted_random_mask(candidates, 0.75, GRID, gen())
    masked, background, visible = (m.view(2, 2, 16) for m in (km.masked, km.background, km.visible))
    assert not (km.masked & km.background).any()
    assert not (km.hidden ^ (km.masked | km.background)).any()
    assert not ((km.masked | km.visible) & ~candidates).any()  # only candidates are encoded or reconstructed
    # per frame k = min over batch of candidates: frame 0 → 10, frame 1 → 8; masked = int(0.75·k)
    assert masked.sum(-1).tolist() == [[7, 6], [7, 6]]
    assert visible.sum(-1).tolist() == [[3, 2], [3, 2]]
    assert background.sum(-1).tolist() == [[6, 8], [6, 8]]
    assert not torch.equal(masked[0, 0], masked[0, 1])
    again = restricted_random_mask(candidates, 0.75, GRID, gen())
    assert torch.equal(again.masked, km.masked) and torch.equal(again.background, km.background)


def test_restricted_mask_whole_clip() -> None:
    candidates = torch.zeros(2, N, dtype=torch.bool)
    candidates[0, :20] = True
    candidates[1, 5:30] = True
    km = restricted_random_mask(candidates, 0.5, GRID, gen(), per_frame=False)
    assert km.masked.sum(1).tolist() == [10, 10] and km.visible.sum(1).tolist() == [10, 10]
    assert not ((km.masked | km.visible) & ~candidates).any()


def test_restricted_mask_without_candidates_is_an_error() -> None:
    with pytest.raises(UserError, match="sector"):
        restricted_random_mask(torch.zeros(1, N, dtype=torch.bool), 0.5, GRID, gen())


# (n, ratio, int(ratio·n) masked as VideoMAE's code, n − int(n·(1 − ratio)) masked as MGMAE's/EchoCardMAE's code).
# 1 − 0.9 is 0.09999999999999998 in float64, so 0.9 of 30 keeps int(2.9999999999999996) = 2 visible.
ROUNDING_CASES = [(49, 0.75, 36, 37), (196, 0.9, 176, 177), (49, 0.9, 44, 45), (30, 0.9, 27, 28), (158, 0.75, 118, 119)]


@pytest.mark.parametrize(("n", "ratio", "masked", "code_visible_rule"), [*ROUNDING_CASES, (16, 0.5, 8, 8)])
def test_masked_count_rounding_rules_on_hand_computed_cases(
    n: int, ratio: float, masked: int, code_visible_rule: int
) -> None:
    assert masked_count(n, ratio) == masked_count(n, ratio, "masked") == masked
    assert masked_count(n, ratio, "visible") == code_visible_rule


def test_masked_count_refuses_a_rule_that_leaves_nothing_visible() -> None:
    assert masked_count(10, 0.9) == 9
    with pytest.raises(UserError, match="visible"):
        masked_count(10, 0.9, "visible")  # int(10·0.09999999999999998) = 0
    with pytest.raises(UserError, match="rounding"):
        masked_count(10, 0.5, "nearest")  # type: ignore[arg-type]


@pytest.mark.parametrize(("n", "ratio", "masked", "code_visible_rule"), ROUNDING_CASES[:2])
def test_shared_masks_take_the_rounding_rule(n: int, ratio: float, masked: int, code_visible_rule: int) -> None:
    side = math.isqrt(n)
    grid = (2, side, side)
    for rounding, expected in (("masked", masked), ("visible", code_visible_rule)):
        tube = tube_mask(3, grid, ratio, gen(), rounding=rounding).view(3, 2, n)
        assert tube.sum(-1).eq(expected).all() and torch.equal(tube[:, 0], tube[:, 1])
        framewise = framewise_random_mask(3, grid, ratio, gen(), rounding=rounding).view(3, 2, n)
        assert framewise.sum(-1).eq(expected).all()
        assert random_mask(3, n, ratio, gen(), rounding=rounding).sum(-1).eq(expected).all()
        every = torch.ones(3, 2 * n, dtype=torch.bool)
        km = restricted_random_mask(every, ratio, grid, gen(), rounding=rounding)
        assert km.masked.view(3, 2, n).sum(-1).eq(expected).all()
        assert km.visible.view(3, 2, n).sum(-1).eq(n - expected).all() and not km.background.any()


def test_gather_tokens_order_and_counts() -> None:
    tokens = torch.arange(2 * 4 * 1.0).view(2, 4, 1)
    mask = torch.tensor([[True, False, True, False], [False, False, True, True]])
    assert gather_tokens(tokens, mask).squeeze(-1).tolist() == [[1, 3], [4, 5]]
    assert gather_tokens(tokens, mask, keep=True).squeeze(-1).tolist() == [[0, 2], [6, 7]]
    assert gather_by_index(tokens, torch.tensor([[3, 0], [1, 2]])).squeeze(-1).tolist() == [[3, 0], [5, 6]]
    with pytest.raises(ValueError, match="equal row counts"):
        gather_tokens(tokens, torch.tensor([[True, False, False, False], [True, True, False, False]]))


# --- patches -----------------------------------------------------------------------------------------------------


def test_patchify_layout_and_round_trip() -> None:
    c, t, h, w, tub, p = 2, 4, 4, 6, 2, 2
    code = torch.arange(c * t * h * w, dtype=torch.float32).view(1, c, t, h, w)  # value = flat index of (c,t,y,x)
    patches = patchify(code, tub, p)
    grid = (t // tub, h // p, w // p)
    assert patches.shape == (1, math.prod(grid), tub * p * p * c)
    for tt in range(grid[0]):
        for hh in range(grid[1]):
            for ww in range(grid[2]):
                token = patches[0, (tt * grid[1] + hh) * grid[2] + ww]
                for dt in range(tub):
                    for dy in range(p):
                        for dx in range(p):
                            for ch in range(c):
                                expected = code[0, ch, tt * tub + dt, hh * p + dy, ww * p + dx]
                                assert token[((dt * p + dy) * p + dx) * c + ch] == expected
    assert torch.equal(unpatchify(patches, grid, tub, p, c), code)


def test_normalized_pixel_targets_formula() -> None:
    x = torch.rand(2, 3, 4, 8, 8, generator=gen(5), dtype=torch.float64)
    patches = patchify(x, 2, 4)
    targets = normalized_pixel_targets(patches, 2, 4, 3).numpy()
    pixels = patches.numpy().reshape(2, -1, 32, 3)
    mean = pixels.mean(axis=2, keepdims=True)
    std = pixels.std(axis=2, ddof=1, keepdims=True)
    np.testing.assert_allclose(targets, ((pixels - mean) / (std + 1e-6)).reshape(2, -1, 96), rtol=1e-12)
    per_channel = targets.reshape(2, -1, 32, 3)
    np.testing.assert_allclose(per_channel.mean(axis=2), 0, atol=1e-12)
    np.testing.assert_allclose(per_channel.std(axis=2, ddof=1), 1, atol=1e-4)


# --- encoder -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls_token", [False, True])
def test_masked_forward_equals_blocks_on_gathered_tokens(cls_token: bool) -> None:
    model = tiny_vit(cls_token=cls_token).eval()
    x = clip()
    mask = tube_mask(2, GRID, 0.75, gen())
    out = model(x, mask)
    assert out.shape == (2, model.num_prefix + 8, 32)
    tokens = model.embed(x)[~mask].view(2, 8, 32)
    if cls_token:
        tokens = torch.cat([model.cls_token.expand(2, -1, -1), tokens], dim=1)
    for block in model.blocks:
        tokens = block(tokens)
    torch.testing.assert_close(out, model.norm(tokens))
    assert model.embed(x).is_contiguous()  # strided tokens would make every LayerNorm/Linear copy


def test_masked_pixels_do_not_reach_the_encoder() -> None:
    model = tiny_vit().eval()
    x = clip()
    mask = random_mask(2, N, 0.5, gen())
    pixel_mask = unpatchify(mask[..., None].expand(-1, -1, 128).float(), GRID, 2, 8, 1).bool()
    perturbed = torch.where(pixel_mask, torch.randn_like(x), x)
    torch.testing.assert_close(model(x, mask), model(perturbed, mask))
    assert not torch.allclose(model(x), model(perturbed))


def test_features_shapes_determinism_and_pooling() -> None:
    mean_model = tiny_vit(drop_path=0.2).eval()
    x = clip()
    emb = mean_model.forward_features(x)
    assert emb.pooled.shape == (2, 32) and emb.tokens.shape == (2, 2, 4, 4, 32)
    torch.testing.assert_close(emb.pooled, emb.tokens.mean(dim=(1, 2, 3)))
    torch.testing.assert_close(emb.tokens.reshape(2, N, 32), mean_model(x))
    again = mean_model.forward_features(x)
    assert torch.equal(again.pooled, emb.pooled) and torch.equal(again.tokens, emb.tokens)

    cls_model = tiny_vit(cls_token=True).eval()
    out = cls_model(x)
    cls_emb = cls_model.forward_features(x)
    torch.testing.assert_close(cls_emb.pooled, out[:, 0])
    torch.testing.assert_close(cls_emb.tokens.reshape(2, N, 32), out[:, 1:])


def test_weight_init() -> None:
    model = tiny_vit(cls_token=True)
    assert torch.equal(model.patch_embed.bias, torch.zeros(32))
    qkv = model.blocks[0].attn.qkv
    assert torch.equal(qkv.bias, torch.zeros(96))
    assert qkv.weight.abs().max() <= math.sqrt(6 / (32 + 96))
    assert model.patch_embed.weight.abs().max() <= math.sqrt(6 / (128 + 32))
    assert torch.equal(model.norm.weight, torch.ones(32)) and model.norm.eps == 1e-6
    assert model.cls_token is not None and 0 < model.cls_token.abs().max() <= 0.1  # std 0.02


def test_input_and_config_validation() -> None:
    model = tiny_vit()
    with pytest.raises(ValueError, match="expects clips"):
        model(torch.zeros(1, 1, 6, 32, 32))
    with pytest.raises(UserError, match="vit_tiny"):
        VideoViT.from_preset("vit_huge", **GEOMETRY)
    with pytest.raises(UserError, match="tubelet"):
        tiny_vit(frames=5)
    with pytest.raises(UserError, match="patch"):
        tiny_vit(img_size=30)
    with pytest.raises(UserError, match="position"):
        tiny_vit(pos="rope")


def test_from_preset() -> None:
    model = VideoViT.from_preset("vit_tiny", depth=1, **GEOMETRY)
    assert (model.embed_dim, len(model.blocks), model.blocks[0].attn.num_heads) == (192, 1, 3)
    assert model.grid == GRID and model.num_patches == N and model.num_prefix == 0
    assert PRESETS["vit_small"] == (384, 12, 6)


def test_gradients_and_freeze_first() -> None:
    model = tiny_vit(pos="learned_st", cls_token=True)
    model(clip()).square().mean().backward()
    assert model.patch_embed.weight.grad is not None and model.patch_embed.weight.grad.abs().sum() > 0
    assert model.pos_spatial is not None and model.pos_spatial.grad is not None

    frozen = tiny_vit(pos="learned_st", cls_token=True)
    frozen.freeze_first(1)
    trainable = {name for name, p in frozen.named_parameters() if p.requires_grad}
    assert not any(name.startswith(("patch_embed", "pos_", "blocks.0.")) for name in trainable)
    assert {"cls_token", "norm.weight"} <= trainable and any(name.startswith("blocks.1.") for name in trainable)
    frozen(clip()).square().mean().backward()
    assert frozen.patch_embed.weight.grad is None and frozen.blocks[1].mlp.fc1.weight.grad is not None
    with pytest.raises(UserError, match="freeze"):
        frozen.freeze_first(3)


# --- decoder -----------------------------------------------------------------------------------------------------


def manual_decoder_inputs(
    decoder: MAEDecoder, visible: torch.Tensor, mask: torch.Tensor, background: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-position loop: the k-th visible token (t-major) goes to the k-th unmasked position."""
    projected = decoder.embed(visible)
    rows = []
    for b in range(mask.shape[0]):
        k = 0
        row = []
        for n in range(mask.shape[1]):
            if mask[b, n]:
                row.append(decoder.mask_token[0, 0])
            elif background is not None and background[b, n]:
                assert decoder.background_token is not None
                row.append(decoder.background_token[0, 0])
            else:
                row.append(projected[b, k])
                k += 1
        rows.append(torch.stack(row))
    return torch.stack(rows) + decoder.pos_fixed


def test_decoder_places_tokens_in_t_major_order() -> None:
    torch.manual_seed(0)
    decoder = MAEDecoder(32, 16, 0, 2, N, 5).eval()
    mask = random_mask(2, N, 0.75, gen())
    visible = torch.randn(2, 8, 32, generator=gen(2))
    expected = decoder.head(decoder.norm(manual_decoder_inputs(decoder, visible, mask)))
    full = decoder(visible, mask, return_masked_only=False)
    torch.testing.assert_close(full, expected)
    torch.testing.assert_close(decoder(visible, mask), gather_tokens(expected, mask, keep=True))


def test_decoder_masked_only_matches_full_and_gathered_targets() -> None:
    torch.manual_seed(0)
    decoder = MAEDecoder(32, 16, 2, 2, N, 5).eval()
    mask = tube_mask(2, GRID, 0.5, gen())
    visible = torch.randn(2, 16, 32, generator=gen(2))
    masked_only = decoder(visible, mask)
    assert masked_only.shape == (2, 16, 5)
    torch.testing.assert_close(masked_only, decoder(visible, mask, return_masked_only=False)[mask].view(2, 16, 5))
    with pytest.raises(ValueError, match="visible"):
        decoder(visible[:, :3], mask)


def test_decoder_background_token() -> None:
    torch.manual_seed(0)
    decoder = MAEDecoder(32, 16, 0, 2, N, 5, pos="sincos_3d", grid=GRID, background_token=True).eval()
    assert decoder.background_token is not None and torch.equal(decoder.background_token, torch.zeros(1, 1, 16))
    torch.nn.init.normal_(decoder.background_token)
    candidates = torch.ones(2, N, dtype=torch.bool)
    candidates[:, :8] = False
    km = restricted_random_mask(candidates, 0.5, GRID, gen())
    visible = torch.randn(2, int(km.visible[0].sum()), 32, generator=gen(2))
    full = decoder(visible, km.masked, return_masked_only=False, background=km.background)
    expected = decoder.head(decoder.norm(manual_decoder_inputs(decoder, visible, km.masked, km.background)))
    torch.testing.assert_close(full, expected)


def test_encoder_decoder_gradients_reach_patch_embed() -> None:
    model = tiny_vit()
    decoder = MAEDecoder(32, 16, 1, 2, N, 128)
    x = clip()
    mask = tube_mask(2, GRID, 0.75, gen())
    targets = gather_tokens(normalized_pixel_targets(patchify(x, 2, 8), 2, 8, 1), mask, keep=True)
    loss = (decoder(model(x, mask), mask) - targets).square().mean()
    loss.backward()
    assert model.patch_embed.weight.grad is not None and model.patch_embed.weight.grad.abs().sum() > 0
    assert decoder.mask_token.grad is not None and decoder.mask_token.grad.abs().sum() > 0
