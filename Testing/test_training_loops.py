"""Training library: losses, VideoMAE, contrastive loop, checkpoints and resume, torchrun (gloo).

Tiny architecture (image 32, frames 8, dim 48) and tiny crop caches written to tmp; the
text tower is the real offline MiniLM.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from TotalFMLib.models.checkpoint import read_checkpoint
from TotalFMLib.config import ImageArch, ModelConfig
from TotalFMLib.errors import InputError
from TotalFMLib.models.image_tower import build_image_tower
from TotalFMLib.training.checkpointing import load_image_tower_weights, save_image_tower
from TotalFMLib.training.contrastive import ContrastiveModel, ContrastiveTask, build_contrastive_model
from TotalFMLib.training.curves import read_log
from TotalFMLib.training.dataset import WHOLE_VOLUME_LAYOUT, CropDataset, collate, write_tiny_cache
from TotalFMLib.training.loop import cosine_with_warmup, seed_everything, train
from TotalFMLib.training.losses import clip_loss, same_text_matrix, siglip_loss
from TotalFMLib.training.samplers import OrganBatchSampler, RandomBatchSampler
from TotalFMLib.training.train_config import TrainConfig, apply_overrides, load_train_config
from TotalFMLib.training.videomae import VideoMAE, VideoMAETask, tube_mask

HERE = Path(__file__).resolve().parent
TINY_ARCH = dict(image_size=32, image_patch_size=16, frames=8, frame_patch_size=4, dim=48, depth=2,
                 heads=4, mlp_dim=96, channels=3, dim_head=12, out_dim=32)
ORGANS = ["liver", "spleen", "kidney_left", "kidney_right"]


def tiny_config(**over) -> dict:
    cfg = {"model": {"arch": TINY_ARCH, "embed_dim": 24, "model_id": "tiny-test"},
           "steps": 4, "batch_size": 4, "ckpt_every": 2,
           "optim": {"lr": 1e-3, "warmup_steps": 1},
           "contrastive": {"organs_per_batch": 2, "text_trainable_layers": 1},
           "videomae": {"decoder_dim": 32, "decoder_depth": 1, "mask_ratio": 0.75}}
    cfg.update(over)
    return cfg


def make_cache(root: Path, n_cases: int = 6, seed: int = 0) -> Path:
    """Random crops; each organ alternates normal/lesion; normal organs have two phrasings."""
    g = torch.Generator().manual_seed(seed)
    cases = {}
    for c in range(n_cases):
        labels = [["hypodense lesion"] if (c + i) % 2 else [] for i in range(len(ORGANS))]
        sentences = [f"{o.replace('_', ' ')} with a hypodense lesion" if lab
                     else [f"normal {o.replace('_', ' ')}", f"the {o.replace('_', ' ')} is unremarkable"]
                     for o, lab in zip(ORGANS, labels)]
        findings = sorted({f for lab in labels for f in lab})
        cases[f"case{c}"] = {"images": torch.rand(len(ORGANS), 3, 32, 32, 8, generator=g).half(),
                             "organs": list(ORGANS), "sentences": sentences, "labels": labels,
                             "whole_images": torch.rand(1, 3, 32, 32, 8, generator=g).half(),
                             "whole_organs": ["whole_volume"], "whole_labels": [findings],
                             "whole_sentences": [[f"FINDINGS: case {c % 2} report"]]}
    splits = {f"case{n_cases - 1}": "test"}
    return write_tiny_cache(root, cases, splits)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return make_cache(tmp_path_factory.mktemp("cache"))


# ------------------------------------------------------------------ losses
def test_clip_loss_hand_cases():
    img = torch.eye(2)
    scale = torch.tensor(0.0)  # exp(0) = 1: logits are the identity matrix
    # one positive per row: -log(e / (e + 1)) in both directions
    assert clip_loss(img, img, scale).item() == pytest.approx(math.log(1 + math.e) - 1, abs=1e-6)
    # both texts positive for both images: soft target (1/2, 1/2)
    same = torch.ones(2, 2, dtype=torch.bool)
    assert clip_loss(img, img, scale, same).item() == pytest.approx(math.log(1 + math.e) - 0.5, abs=1e-6)
    # temperature: scale log(2) doubles the logits
    assert clip_loss(img, img, torch.tensor(math.log(2.0))).item() == pytest.approx(
        math.log(1 + math.e ** 2) - 2, abs=1e-6)


def test_siglip_loss_hand_cases():
    img = torch.eye(2)
    scale, bias = torch.tensor(0.0), torch.tensor(-1.0)  # logits: 0 on the diagonal, -1 off it
    # positives (diagonal, logit 0): log 2 each; negatives (logit -1, label -1): log(1 + e^-1); sum / B
    expected = (2 * math.log(2) + 2 * math.log(1 + math.exp(-1))) / 2
    assert siglip_loss(img, img, scale, bias).item() == pytest.approx(expected, abs=1e-6)
    # identical sentences everywhere: the off-diagonal pairs become positives, log(1 + e)
    same = same_text_matrix(torch.tensor([7, 7]))
    expected = (2 * math.log(2) + 2 * math.log(1 + math.e)) / 2
    assert siglip_loss(img, img, scale, bias, same).item() == pytest.approx(expected, abs=1e-6)


def test_duplicate_sentences_are_pulled_together_not_apart():
    """Samples 0 and 1 share a sentence: plain losses prefer them apart, ours together."""
    norm = torch.nn.functional.normalize
    together = norm(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), dim=-1)
    apart = norm(torch.tensor([[1.0, 0.5], [1.0, -0.5], [0.0, 1.0]]), dim=-1)
    scale, bias = torch.tensor(math.log(10.0)), torch.tensor(-5.0)
    same = same_text_matrix(torch.tensor([1, 1, 2]))
    assert clip_loss(apart, apart, scale) < clip_loss(together, together, scale)
    assert clip_loss(together, together, scale, same) < clip_loss(apart, apart, scale, same)
    assert siglip_loss(apart, apart, scale, bias) < siglip_loss(together, together, scale, bias)
    assert siglip_loss(together, together, scale, bias, same) < siglip_loss(apart, apart, scale, bias, same)


# ---------------------------------------------------------------- VideoMAE
def test_tube_mask_ratio_and_tubes():
    grid = (6, 6, 4)
    visible, masked = tube_mask(3, grid, 0.9, torch.Generator().manual_seed(0))
    n_spatial_visible = 36 - round(0.9 * 36)
    assert visible.shape == (3, n_spatial_visible * 4) and masked.shape == (3, 36 * 4 - n_spatial_visible * 4)
    for v, m in zip(visible, masked):
        both = torch.cat([v, m]).sort().values
        assert torch.equal(both, torch.arange(36 * 4))  # disjoint, covering the grid
        spatial = (v // 4).unique()
        assert len(spatial) == n_spatial_visible
        # a visible spatial position is visible in every frame (tokens ordered h w f)
        assert torch.equal(v, (spatial[:, None] * 4 + torch.arange(4)).reshape(-1))
    assert not torch.equal(visible[0], visible[1])  # per-sample masks


def test_videomae_steps_lower_the_loss_on_a_fixed_batch():
    seed_everything(0)
    tower = build_image_tower(TINY_ARCH, 24)
    mae = VideoMAE(tower, decoder_dim=32, decoder_depth=1, decoder_heads=4, mask_ratio=0.75)
    x = torch.rand(4, 3, 32, 32, 8, generator=torch.Generator().manual_seed(1))
    opt = torch.optim.AdamW(mae.parameters(), lr=1e-3)
    losses = []
    for _ in range(15):
        loss = mae(x, torch.Generator().manual_seed(2))  # same masks every step
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_videomae_and_contrastive_losses_run_under_autocast(dtype):
    """The GPU path trains under bf16/fp16 autocast; CPU autocast exercises the same dtype
    mixing (the decoder once scattered bf16 tokens into fp32 mask tokens and failed)."""
    seed_everything(0)
    x = torch.rand(2, 3, 32, 32, 8)
    mae = VideoMAE(build_image_tower(TINY_ARCH, 24), decoder_dim=32, decoder_depth=1)
    model = build_contrastive_model(ModelConfig(arch=TINY_ARCH, embed_dim=24))
    tokens = model.text_tower.tokenize(["Normal liver.", "Liver with a hypodense lesion."])
    with torch.autocast("cpu", dtype=dtype):
        mae_loss = mae(x)
        img, txt, scale, bias, _ = model(x, tokens)
        con_loss = siglip_loss(img, txt, scale, bias, same_text_matrix(torch.tensor([1, 2])))
    for loss in (mae_loss, con_loss):
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
        loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in mae.parameters() if p.grad is not None)


def test_videomae_encoder_weights_initialise_the_contrastive_model(tmp_path):
    seed_everything(0)
    mae = VideoMAE(build_image_tower(TINY_ARCH, 24), decoder_dim=32, decoder_depth=1)
    path = save_image_tower(tmp_path / "enc.pt", mae.tower, ModelConfig(arch=TINY_ARCH, embed_dim=24))
    model = build_contrastive_model(ModelConfig(arch=TINY_ARCH, embed_dim=24), init_image=path)
    for k, v in mae.tower.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k


# ------------------------------------------------------------- data, config
def test_dataset_items_keys_and_bad_folder(cache, tmp_path):
    ds = CropDataset(cache, split="train")
    assert len(ds) == 5 * len(ORGANS)
    item = ds[0]
    assert item["image"].dtype == torch.float16 and item["image"].shape == (3, 32, 32, 8)  # as stored; float32 on the device
    batch = collate([ds[i] for i in range(len(ds))])
    keys = {}
    for organ, text, key in zip(batch["organ"], batch["text"], batch["key"].tolist()):
        keys.setdefault(key, set()).add((organ, "lesion" in text))
    assert all(len(v) == 1 for v in keys.values())  # a key never spans two organs or normal+lesion
    normal_liver = {k for k, v in keys.items() if v == {("liver", False)}}
    assert len(normal_liver) == 1  # both phrasings of a normal liver share one key
    with pytest.raises(InputError, match="manifest"):
        CropDataset(tmp_path)
    for bad, problem in (('{"case_id": "a", "shard": "x.pt"}\n[1, 2]\n', "line 2: bad entry"),
                         ('{"case_id": "a", "shard": "x.pt"}\n\n{"case_id": \n', "line 3: bad entry"),
                         ('{"case_id": "a"}\n', "line 1: bad entry")):
        (tmp_path / "manifest.jsonl").write_text(bad)
        with pytest.raises(InputError, match=problem) as err:
            CropDataset(tmp_path, split=None)
        assert str(tmp_path / "manifest.jsonl") in str(err.value)
    whole = CropDataset(cache, split="train", layout=WHOLE_VOLUME_LAYOUT)
    assert len(whole) == 5 and whole[0]["organ"] == "whole_volume" and whole[0]["text"].startswith("FINDINGS")
    batches = list(OrganBatchSampler(whole.organs, batch_size=4, organs_per_batch=2))
    assert len(batches) == 1 and len(set(batches[0])) == 4  # a single "organ" still fills a batch


def test_organ_sampler_groups_ranks_and_resume():
    organs = [o for o in ORGANS for _ in range(8)]
    s = OrganBatchSampler(organs, batch_size=4, organs_per_batch=2, seed=1)
    batches = list(s)
    assert len(batches) == len(s) == 8
    for b in batches:
        names = [organs[i] for i in b]
        assert names[0] == names[1] and names[2] == names[3] and names[0] != names[2]
    assert sorted(i for b in batches for i in b) == list(range(32))
    s.set_epoch(0, start=3)
    assert list(s) == batches[3:]
    s.set_epoch(1)
    assert list(s) != batches
    r0, r1 = (OrganBatchSampler(organs, 4, 2, seed=1, rank=r, world_size=2) for r in (0, 1))
    a, b = list(r0), list(r1)
    assert len(a) == len(b) == 4 and not set(sum(a, [])) & set(sum(b, []))
    q0, q1 = (RandomBatchSampler(10, 2, seed=0, rank=r, world_size=2) for r in (0, 1))
    assert len(q0) == len(q1) == 2 and not set(sum(list(q0), [])) & set(sum(list(q1), []))


def test_schedule_warmup_then_cosine():
    f = cosine_with_warmup(warmup=4, total=14, min_ratio=0.1)
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(9) == pytest.approx(0.55)
    assert f(14) == pytest.approx(0.1)


def test_config_files_overrides_and_errors(tmp_path, training_dir):
    from TotalFMLib.training.crop_maps import MAP_STRIDE

    archs = {}
    for name in ("demo_pretrain.json", "demo_contrastive.json", "gpu_pretrain.json", "gpu_contrastive.json",
                 "full_contrastive.json"):
        cfg = load_train_config(training_dir / "configs" / name)
        mc = cfg.model_config()
        arch = archs[name] = mc.arch
        assert arch.dim % 3 == 0 and arch.image_size % arch.image_patch_size == 0
        assert arch.frames % arch.frame_patch_size == 0
        if cfg.task == "contrastive" and cfg.contrastive.token_weight > 0:  # the token objective's grid
            assert arch.image_patch_size % MAP_STRIDE == 0 and arch.frame_patch_size % MAP_STRIDE == 0
    for size in ("demo", "gpu"):  # pre-training initialises the contrastive image tower
        assert archs[f"{size}_pretrain.json"] == archs[f"{size}_contrastive.json"]
    full = load_train_config(training_dir / "configs" / "full_contrastive.json").model_config()
    assert full.text.kind == "modernbert" and full.arch.dim == 1008 and full.embed_dim == 768
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("task: videomae\nsteps: 7\noptim:\n  lr: 0.01\nmodel:\n  embed_dim: 64\n")
    cfg = load_train_config(yaml_file, ["optim.warmup_steps=3", "model.arch.depth=2"])
    assert (cfg.task, cfg.steps, cfg.optim.lr, cfg.optim.warmup_steps) == ("videomae", 7, 0.01, 3)
    assert cfg.model["embed_dim"] == 64 and cfg.model["arch"]["depth"] == 2 and cfg.model["arch"]["dim"] == 1008
    bad = tmp_path / "bad.json"
    bad.write_text('{"stepz": 3}')
    with pytest.raises(InputError, match="bad.json.*stepz"):
        load_train_config(bad)
    with pytest.raises(ValueError, match="unknown key"):
        apply_overrides(TrainConfig(), ["optim.lrr=1"])


# ------------------------------------------------------------ contrastive
def test_contrastive_steps_lower_the_loss_on_a_fixed_batch(cache):
    cfg = TrainConfig.from_dict(tiny_config())
    seed_everything(0)
    task = ContrastiveTask(cfg, cache)
    blocks = task.model.text_tower.transformer_layers()
    assert blocks[-1].training and not blocks[0].training  # frozen blocks run without dropout
    assert not any(p.requires_grad for p in blocks[0].parameters())
    batch = task.collate([task.dataset[i] for i in range(8)])
    opt = torch.optim.AdamW(task.param_groups(cfg))
    losses = []
    for _ in range(8):
        loss = task.loss(task.model, batch, torch.device("cpu"))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


def test_videomae_task_trains_and_writes_an_image_encoder(cache, tmp_path):
    cfg = TrainConfig.from_dict(tiny_config(task="videomae", steps=2, accum_steps=2, data_view="whole_volume",
                                            batch_size=2))
    seed_everything(0)
    result = train(VideoMAETask(cfg, cache), cfg, tmp_path, progress=False)
    state, config = read_checkpoint(result["final"])
    assert all(k.startswith(("vit.", "image_proj.")) for k in state) and config.arch == ImageArch.from_dict(TINY_ARCH)
    tower = build_image_tower(TINY_ARCH, 24)
    load_image_tower_weights(tower, result["final"])


def test_resume_continues_exactly_and_final_model_loads_strictly(cache, tmp_path):
    cfg = TrainConfig.from_dict(tiny_config())
    seed_everything(0)
    full = train(ContrastiveTask(cfg, cache), cfg, tmp_path / "full", progress=False)
    seed_everything(0)
    train(ContrastiveTask(cfg, cache), cfg, tmp_path / "cut", progress=False, max_steps=2)
    assert not (tmp_path / "cut" / "model.pt").exists()
    seed_everything(123)  # the resumed run must not depend on the fresh seed
    resumed = train(ContrastiveTask(cfg, cache), cfg, tmp_path / "cut", progress=False,
                    resume=tmp_path / "cut" / "checkpoint_last.pt")
    a, b = read_log(tmp_path / "full" / "metrics.jsonl"), read_log(tmp_path / "cut" / "metrics.jsonl")
    assert [r["step"] for r in a] == [r["step"] for r in b] == [1, 2, 3, 4]
    for ra, rb in zip(a, b):
        assert ra["loss"] == pytest.approx(rb["loss"], rel=1e-6, abs=1e-7), ra["step"]
        assert ra["lr"] == rb["lr"]
    assert len({r["loss"] for r in a}) == 4  # the steps really differ
    assert resumed["loss"] == pytest.approx(full["loss"], rel=1e-6)
    assert (tmp_path / "full" / "curves.png").stat().st_size > 1000

    blob = torch.load(full["final"], weights_only=True)
    assert blob["format"] == "totalfm-slicer/1" and set(blob) >= {"model_state_dict", "config"}
    state, config = read_checkpoint(full["final"])
    assert config.arch == ImageArch.from_dict(TINY_ARCH) and config.model_id == "tiny-test"
    assert config.logit_scale == pytest.approx(float(state["logit_scale"]))
    fresh = ContrastiveModel(config)
    fresh.load_state_dict(state, strict=True)
    x = torch.rand(2, 3, 32, 32, 8)
    seed_everything(0)
    task = ContrastiveTask(cfg, cache)
    task.model.load_state_dict(torch.load(tmp_path / "full" / "checkpoint_last.pt", weights_only=True)["model_state_dict"])
    fresh.eval(), task.model.eval()
    with torch.no_grad():
        assert torch.allclose(fresh.image_tower(x), task.model.image_tower(x), atol=1e-6)
        assert torch.allclose(fresh.encode_text(["liver lesion"]), task.model.encode_text(["liver lesion"]), atol=1e-6)


def test_final_model_without_frozen_text_weights(cache, tmp_path):
    cfg = TrainConfig.from_dict(tiny_config(steps=1, contrastive={"organs_per_batch": 2, "save_frozen_text": False}))
    seed_everything(0)
    result = train(ContrastiveTask(cfg, cache), cfg, tmp_path, progress=False)
    blob = torch.load(result["final"], weights_only=True)
    assert blob["text_encoder_partial"] is True
    state = blob["model_state_dict"]
    fresh = ContrastiveModel(ModelConfig.from_dict(blob["config"]))
    missing = fresh.load_state_dict(state, strict=False).missing_keys
    assert missing and all(k.startswith("text_encoder.") for k in missing)
    trained_layer = [k for k in state if k.startswith("text_encoder.")]
    assert trained_layer and all(".layer.5." in k for k in trained_layer)  # MiniLM's last block only


# --------------------------------------------------------------- torchrun
def _torchrun(args: list[str], cwd: Path, timeout: int = 240) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_gather_with_grad_equals_single_process_loss_and_gradients(tmp_path):
    out = tmp_path / "ddp.pt"
    proc = _torchrun([str(HERE / "ddp_gather_worker.py"), str(out)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sys.path.insert(0, str(HERE))
    from ddp_gather_worker import single_process

    ddp, single = torch.load(out, weights_only=True), single_process()
    for kind in ("clip", "siglip"):
        assert ddp[kind]["loss"].item() == pytest.approx(single[kind]["loss"].item(), rel=1e-6)
        assert ddp[kind]["grads"].keys() == single[kind]["grads"].keys()
        for name, g in single[kind]["grads"].items():
            assert torch.allclose(ddp[kind]["grads"][name], g, atol=1e-6), (kind, name)


def test_torchrun_two_cpu_processes_train_and_rank0_saves(cache, tmp_path, training_dir):
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(tiny_config(steps=2)))
    out = tmp_path / "run"
    proc = _torchrun([str(training_dir / "train_contrastive.py"), "--config", str(config),
                      "--data", str(cache), "--out", str(out), "--quiet"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("contrastive: step 2") == 1  # one summary: only rank 0 reports
    rows = read_log(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2] and all(math.isfinite(r["loss"]) for r in rows)
    state, config = read_checkpoint(out / "model.pt")
    ContrastiveModel(config).load_state_dict(state, strict=True)
