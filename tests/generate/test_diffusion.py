"""Text-to-image diffusion: a tiny UNet learns four pictures from their prompts; guidance, save/load, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

from tessera.cli import app
from tessera.errors import SchemaError, TesseraError
from tessera.generate.diffusion import (
    DiffusionGenerator,
    ModelSettings,
    PriorSettings,
    TextConditioner,
    TrainData,
    TrainSettings,
    parse_settings,
    train_denoiser,
)
from tessera.generate.text2image import load_config

# The module's fixture trains a tiny UNet for ~20 s on two idle cores; the tests that use it are slow.

SIZE = 16
# Prompts far apart in MiniLM space: "a horizontal bar" and "a vertical bar" are nearly one vector.
PROMPTS = ["a sunny beach", "a fast red car", "a cup of hot coffee", "a sleeping cat"]
TINY_MODEL = ModelSettings(block_out_channels=(16, 32), attention_levels=(1,), context_dim=32, patch=2)


def pictures() -> torch.Tensor:
    """Four 16x16 grayscale pictures in [-1, 1], far apart in pixel space."""
    x = -torch.ones(4, 1, SIZE, SIZE)
    x[0, :, 6:10, :] = 1.0
    x[1, :, :, 6:10] = 1.0
    x[2, :, 4:12, 4:12] = 1.0
    x[3, :, 1:15, 1:15] = 1.0
    x[3, :, 3:13, 3:13] = -1.0
    return x


@pytest.fixture(scope="module")
def text(minilm) -> TextConditioner:
    return TextConditioner(minilm)


@pytest.fixture(scope="module")
def trained(text) -> DiffusionGenerator:
    torch.set_num_threads(1)
    data = TrainData(samples=pictures(), prompts=PROMPTS, pairs=torch.tensor([[i, i] for i in range(4)]))
    train = TrainSettings(steps=200, batch_size=16, lr=3e-3, warmup=20, cond_drop=0.15, ema_decay=0.99, seed=0)
    return train_denoiser(data, text, TINY_MODEL, train, log=lambda _: None)


@pytest.mark.slow
def test_unet_overfits_each_picture_to_its_prompt(trained):
    samples = trained.sample(PROMPTS, n=2, guidance=3.0, steps=20, seed=0, progress=False)
    assert samples.shape == (8, 1, SIZE, SIZE)
    distances = torch.cdist(samples.flatten(1), pictures().flatten(1))  # (8 samples, 4 pictures)
    nearest = distances.argmin(dim=1)
    assert nearest.tolist() == [0, 0, 1, 1, 2, 2, 3, 3], distances
    assert trained.meta["history"][-1]["loss"] < trained.meta["history"][0]["loss"]


@pytest.mark.slow
def test_guidance_changes_the_samples_and_seed_fixes_them(trained):
    kwargs = {"n": 2, "steps": 10, "seed": 3, "progress": False}
    plain = trained.sample(PROMPTS[:2], guidance=0.0, **kwargs)
    guided = trained.sample(PROMPTS[:2], guidance=3.0, **kwargs)
    assert (plain - guided).abs().mean() > 0.05
    assert torch.equal(guided, trained.sample(PROMPTS[:2], guidance=3.0, **kwargs))
    assert not torch.equal(guided, trained.sample(PROMPTS[:2], guidance=3.0, **{**kwargs, "seed": 4}))


@pytest.mark.slow
def test_dpm_solver_samples_the_same_pictures(trained):
    samples = trained.sample(PROMPTS, n=1, guidance=3.0, steps=10, seed=0, sampler="dpm", progress=False)
    assert torch.cdist(samples.flatten(1), pictures().flatten(1)).argmin(dim=1).tolist() == [0, 1, 2, 3]


@pytest.mark.slow
def test_save_and_load_give_identical_samples(trained, text, tmp_path):
    path = trained.save(tmp_path / "gen")
    assert sorted(p.name for p in path.iterdir()) == ["denoiser.pt", "generator.json"]
    loaded = DiffusionGenerator.load(path, text=text)
    a = trained.generate(PROMPTS[2], n=3, steps=8, seed=11, progress=False)
    b = loaded.generate(PROMPTS[2], n=3, steps=8, seed=11, progress=False)
    assert a.dtype == np.uint8 and a.shape == (3, SIZE, SIZE, 1)
    assert np.array_equal(a, b)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("call", "message"),
    [
        ({"prompts": []}, "non-empty"),
        ({"prompts": ["ok", 3]}, "prompt 1"),
        ({"prompts": ["ok", "  "]}, "prompt 1"),
        ({"prompts": "ok", "n": 0}, "n must be a positive integer"),
        ({"prompts": "ok", "n": 5000}, "over 1024 samples"),
        ({"prompts": "ok", "steps": 0}, "steps must be an integer from 1"),
        ({"prompts": "ok", "guidance": -1}, "guidance must be a number"),
        ({"prompts": "ok", "sampler": "euler"}, "sampler must be one of"),
        ({"prompts": "ok", "labels": "george"}, "takes no extra label"),
    ],
)
def test_bad_prompt_input_is_a_clear_error(trained, call, message):
    prompts = call.pop("prompts")
    with pytest.raises(TesseraError, match=message):
        trained.sample(prompts, progress=False, **call)


def test_bad_config_names_the_field():
    with pytest.raises(SchemaError, match=r"cfg.yaml: model: .*block_out_channels \[12, 24\] must be a multiple of norm_groups"):
        load_config({"model": {"block_out_channels": [12, 24]}}, "cfg.yaml")
    with pytest.raises(SchemaError, match=r"train.steps: Input should be greater than or equal to 1"):
        load_config({"train": {"steps": 0}}, "cfg.yaml")
    with pytest.raises(SchemaError, match=r"modle: Extra inputs are not permitted"):
        load_config({"modle": {}}, "cfg.yaml")
    with pytest.raises(SchemaError, match=r"attention_levels \[3\] are not levels"):
        parse_settings(ModelSettings, {"attention_levels": [3]}, "model")
    with pytest.raises(SchemaError, match=r"data.dataset: Input should be 'fashion_mnist', 'mnist' or 'flickr8k'"):
        load_config({"data": {"dataset": "cifar"}}, "cfg.yaml")
    with pytest.raises(SchemaError, match=r"guidance: Input should be less than or equal to 50"):
        load_config({"guidance": 80}, "cfg.yaml")


def test_bad_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(TesseraError, match="is not a saved Tessera diffusion generator"):
        DiffusionGenerator.load(tmp_path)


@pytest.mark.slow
def test_cli_samples_a_grid_from_a_saved_model(trained, tmp_path):
    model = trained.save(tmp_path / "gen")
    out = tmp_path / "grid.png"
    result = CliRunner().invoke(
        app, ["generate", str(model), "--prompt", PROMPTS[0], "--prompt", PROMPTS[1], "--n", "3", "--steps", "5", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    with Image.open(out) as grid:
        assert grid.size == (3 * SIZE, 2 * SIZE)
    result = CliRunner().invoke(app, ["generate", str(model), "--prompt", "x", "--speaker", "george", "--out", str(out)])
    assert isinstance(result.exception, SchemaError)


@pytest.mark.realdata
def test_cli_fit_trains_from_a_config(shared_data, minilm, tmp_path):
    config = {
        "task": "text2image",
        "data": {"dataset": "mnist", "max_images": 64, "root": str(shared_data)},
        "text_encoder": minilm,
        "model": TINY_MODEL.model_dump(mode="json"),
        "train": {"steps": 4, "batch_size": 8},
        "output": "model",
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(app, ["generate", "fit", str(path)])
    assert result.exit_code == 0, result.output
    loaded = DiffusionGenerator.load(tmp_path / "model")
    assert loaded.meta["dataset"] == "mnist" and loaded.shape == (1, 28, 28)


def test_latent_space_trains_an_autoencoder_and_round_trips(text, tmp_path):
    latent = {"channels": 2, "block_out_channels": [8, 16], "norm_groups": 4, "steps": 3, "batch_size": 4}
    model = parse_settings(ModelSettings, {**TINY_MODEL.model_dump(), "patch": 1, "latent": latent}, "model")
    data = TrainData(samples=pictures().repeat(1, 3, 1, 1), prompts=PROMPTS, pairs=torch.tensor([[i, i] for i in range(4)]))
    generator = train_denoiser(data, text, model, TrainSettings(steps=2, batch_size=4), log=lambda _: None)
    assert generator.shape == (2, 8, 8) and generator.latent_scale > 0  # one halving: 16x16x3 -> 8x8x2
    images = generator.generate(PROMPTS[:1], n=2, steps=3, progress=False)
    assert images.shape == (2, SIZE, SIZE, 3)
    loaded = DiffusionGenerator.load(generator.save(tmp_path / "latent"), text=text)
    assert np.array_equal(images, loaded.generate(PROMPTS[:1], n=2, steps=3, progress=False))


@pytest.mark.slow
def test_text_prior_is_saved_and_maps_a_paraphrase_onto_its_training_prompt(trained, text, tmp_path):
    assert trained.train_prompts == PROMPTS  # the prior's bank comes with the generator
    generator = DiffusionGenerator.load(trained.save(tmp_path / "plain"), text=text)
    assert generator.prior is None and generator.text_prior() is None
    assert generator.guidance == 3.0
    generator.prior, generator.guidance = PriorSettings(knn=2, temperature=0.05), 4.0
    loaded = DiffusionGenerator.load(generator.save(tmp_path / "prior"), text=text)
    assert loaded.prior == PriorSettings(knn=2, temperature=0.05) and loaded.train_prompts == PROMPTS
    assert loaded.guidance == 4.0
    paraphrase = "a kitten asleep"  # not a training prompt; nearest to "a sleeping cat"
    mapped = loaded.text_vectors([paraphrase])
    assert float((mapped @ text(PROMPTS).T).argmax()) == 3 and float(mapped @ text(PROMPTS[3:]).T) > 0.95
    kwargs = {"n": 2, "steps": 10, "seed": 5, "progress": False}
    with_prior = loaded.sample(paraphrase, **kwargs)
    assert torch.equal(with_prior, loaded.sample(paraphrase, prior={"knn": 2, "temperature": 0.05}, guidance=4.0, **kwargs))
    assert not torch.equal(with_prior, loaded.sample(paraphrase, guidance=3.0, **kwargs))  # the saved default is 4
    assert not torch.equal(with_prior, loaded.sample(paraphrase, prior="off", **kwargs))
    assert torch.cdist(with_prior.flatten(1), pictures().flatten(1)).argmin(dim=1).tolist() == [3, 3]
    generator.train_prompts = []
    with pytest.raises(TesseraError, match="no training captions saved"):
        generator.sample(paraphrase, **kwargs)
