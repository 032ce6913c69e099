import math

import pytest
import torch

from qwenkit.image.flow import EMA, add_noise, cfg_combine, flow_matching_loss, resolution_shift, time_shift
from qwenkit.image.model import (
    DiffusersVAECodec,
    ImageDenoiser,
    PatchPCACodec,
    PooledPatchImageEncoder,
    assemble_inputs,
    tiny_transformer,
)


def test_time_shift_by_hand():
    sigma = torch.tensor([0.0, 0.25, 0.5, 1.0])
    shifted = time_shift(sigma, 3.0)
    assert torch.allclose(shifted, torch.tensor([0.0, 0.75 / 1.5, 1.5 / 2.0, 1.0]))
    assert torch.equal(time_shift(sigma, 1.0), sigma)
    assert resolution_shift(256) == pytest.approx(math.exp(0.5))
    assert resolution_shift(4096) == pytest.approx(math.exp(1.15))
    with pytest.raises(ValueError):
        time_shift(sigma, 0.0)


def test_rectified_flow_endpoints_and_loss():
    x0, noise = torch.randn(3, 5, 4), torch.randn(3, 5, 4)
    assert torch.equal(add_noise(x0, noise, torch.zeros(3)), x0)
    assert torch.equal(add_noise(x0, noise, torch.ones(3)), noise)
    mid = add_noise(x0, noise, torch.tensor([0.5, 0.5, 0.5]))
    assert torch.allclose(mid, (x0 + noise) / 2)
    assert flow_matching_loss(noise - x0, x0, noise) == 0
    assert flow_matching_loss(torch.zeros_like(x0), x0, noise) == pytest.approx(((noise - x0) ** 2).mean().item())


def test_cfg_combine_by_hand():
    cond = torch.tensor([[3.0, 4.0]])  # norm 5
    uncond = torch.tensor([[1.0, 0.0]])
    plain = cfg_combine(cond, uncond, 2.0, rescale=False)
    assert torch.allclose(plain, torch.tensor([[5.0, 8.0]]))
    rescaled = cfg_combine(cond, uncond, 2.0)
    assert torch.allclose(rescaled, plain * 5.0 / math.sqrt(89.0))
    assert torch.allclose(cfg_combine(cond, uncond, 1.0), cond)


def test_ema_update_and_state_roundtrip():
    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema = EMA(model, decay=0.9)
    with torch.no_grad():
        model.weight.fill_(2.0)
    ema.update(model)
    assert torch.allclose(ema.shadow["weight"], torch.full((1, 2), 1.1))
    other = EMA(model, decay=0.5)
    other.load_state_dict(ema.state_dict())
    assert other.decay == 0.9 and torch.equal(other.shadow["weight"], ema.shadow["weight"])
    other.copy_to(model)
    assert torch.allclose(model.weight, torch.full((1, 2), 1.1))


def test_pca_codec_patch_order_whitening_and_roundtrip():
    torch.manual_seed(0)
    codec = PatchPCACodec(patch=2, channels=12)  # 12 = full rank of a 2x2x3 patch: lossless
    images = torch.rand(8, 3, 4, 6) * 2 - 1
    patches = codec.patches(images)
    assert patches.shape == (8, 6, 12)
    # token (row 1, col 2) is the 2x2 block at pixels [2:4, 4:6], channel-major
    assert torch.equal(patches[3, 1 * 3 + 2], images[3, :, 2:4, 4:6].reshape(-1))
    codec.fit(images)
    tokens = codec.encode(images)
    assert torch.allclose(tokens.reshape(-1, 12).std(0), torch.ones(12), atol=1e-3)
    assert torch.allclose(codec.decode(tokens, 4, 6), images, atol=1e-4)
    with pytest.raises(ValueError, match="multiple"):
        codec.encode(torch.zeros(1, 3, 5, 6))


def test_dual_encoding_inputs_shapes_and_masks():
    b, h, w, c, d = 2, 2, 3, 4, 8
    noisy, source = torch.randn(b, h * w, c), torch.randn(b, h * w, c)
    text = torch.randn(b, 5, d)
    text_mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    semantic = torch.randn(b, 4, d)
    t2i = assemble_inputs(noisy, (h, w), text, text_mask)
    assert t2i.hidden_states.shape == (b, 6, c) and t2i.img_shapes == [[(1, 2, 3)]] * b
    dual = assemble_inputs(noisy, (h, w), text, text_mask, source_tokens=source, semantic_embeds=semantic)
    assert dual.hidden_states.shape == (b, 12, c) and torch.equal(dual.hidden_states[:, 6:], source)
    assert dual.img_shapes == [[(1, 2, 3), (1, 2, 3)]] * b and dual.target_tokens == 6
    assert dual.encoder_hidden_states.shape == (b, 9, d)
    assert torch.equal(dual.encoder_hidden_states[:, :4], semantic)  # semantic tokens precede the instruction
    assert dual.encoder_hidden_states_mask.tolist() == [[True] * 4 + [True] * 3 + [False] * 2, [True] * 9]
    vae_only = assemble_inputs(noisy, (h, w), text, text_mask, source_tokens=source)
    assert vae_only.encoder_hidden_states.shape == (b, 5, d) and vae_only.hidden_states.shape == (b, 12, c)
    with pytest.raises(ValueError, match="do not fill the source grid"):
        assemble_inputs(noisy, (h, w), text, text_mask, source_tokens=source[:, :3])
    with pytest.raises(ValueError, match="grid"):
        assemble_inputs(noisy, (3, 3), text, text_mask)


def test_denoiser_masks_padding_and_uses_each_channel():
    torch.manual_seed(0)
    d = 16
    denoiser = ImageDenoiser(tiny_transformer(4, d, layers=1, heads=2, head_dim=8, axes_dims_rope=(2, 2, 4)),
                             PooledPatchImageEncoder(d, grid=2)).eval()
    noisy, sigma = torch.randn(1, 4, 4), torch.tensor([0.5])
    text, mask = torch.randn(1, 3, d), torch.ones(1, 3, dtype=torch.bool)
    with torch.no_grad():
        base = denoiser(noisy, sigma, (2, 2), text, mask)
        padded_text = torch.cat([text, 100 * torch.randn(1, 2, d)], dim=1)
        padded_mask = torch.cat([mask, torch.zeros(1, 2, dtype=torch.bool)], dim=1)
        padded = denoiser(noisy, sigma, (2, 2), padded_text, padded_mask)
        assert torch.allclose(base, padded, atol=1e-5)  # masked padding changes nothing
        image_a, image_b = torch.rand(1, 3, 8, 8), -torch.rand(1, 3, 8, 8)
        sem_a = denoiser(noisy, sigma, (2, 2), text, mask, source_images=image_a)
        sem_b = denoiser(noisy, sigma, (2, 2), text, mask, source_images=image_b)
        vae_a = denoiser(noisy, sigma, (2, 2), text, mask, source_tokens=torch.randn(1, 4, 4))
    assert base.shape == sem_a.shape == vae_a.shape == (1, 4, 4)
    assert not torch.allclose(sem_a, sem_b) and not torch.allclose(base, vae_a)


def test_diffusers_vae_codec_packs_latents():
    from diffusers import AutoencoderKLQwenImage

    torch.manual_seed(0)
    vae = AutoencoderKLQwenImage(base_dim=24, z_dim=4, dim_mult=[1, 2, 4], num_res_blocks=1,
                                 temperal_downsample=[False, True], latents_mean=[0.0] * 4, latents_std=[2.0] * 4)
    codec = DiffusersVAECodec(vae).eval()
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        tokens = codec.encode(images)
        raw = vae.encode(images.unsqueeze(2)).latent_dist.mode()[:, :, 0] / 2.0
        decoded = codec.decode(tokens, 32, 32)
    assert codec.grid(32, 32) == (4, 4) and tokens.shape == (2, 16, 16)
    # token (0, 0) packs the 2x2 block of normalised latents at the top-left, channel-major
    assert torch.allclose(tokens[:, 0], raw[:, :, :2, :2].reshape(2, -1), atol=1e-6)
    assert decoded.shape == (2, 3, 32, 32)
