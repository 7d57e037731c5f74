"""--init-from RUN: a trained body starts another model (a classifier's layers, a detector's
backbone), heads start fresh, and one line says what moved."""

import numpy as np
import pytest
import torch

import cnnlab
from cnnlab.errors import CnnlabError
from cnnlab.training.transfer import body_tensors, init_from


def quiet(line: str) -> None:
    pass


def test_a_detectors_backbone_starts_a_segmenter_and_its_head_starts_fresh(tmp_path):
    scenes = dict(dataset="scenes:n=24,objects=2", image_size=48, model="resnet20",
                  model_kwargs={"width": 4}, epochs=1, batch_size=8, optimizer="adamw", lr=0.003,
                  out_dir=str(tmp_path))
    det = cnnlab.train(cnnlab.TrainConfig(task="detect", name="det", **scenes), log=quiet, report=False)
    lines = []
    seg = cnnlab.train(cnnlab.TrainConfig(task="segment", name="seg", epochs=1, init_from=str(det.path),
                                          **{k: v for k, v in scenes.items() if k != "epochs"}),
                       log=lines.append, report=False)
    said = next(s for s in lines if s.startswith("init from"))
    assert "kept" in said and "start fresh" in said
    # the backbone the segmenter started from is the detector's (before its own training moved it)
    det_body = body_tensors(det.load_model().state_dict())
    fresh = cnnlab.load_run(seg.path).load_model()
    moved = init_from(fresh, det.path, quiet)
    assert moved["kept"] == len([k for k in det_body if f"backbone.{k}" in fresh.state_dict()])
    assert torch.equal(fresh.state_dict()["backbone.conv1.weight"], det_body["conv1.weight"])


def test_a_classifier_body_starts_another_classifier_and_a_mismatch_is_one_line(tmp_path):
    base = cnnlab.train(cnnlab.TrainConfig(model="lenet5", epochs=1, limit_train=200, out_dir=str(tmp_path),
                                           name="a"), log=quiet, report=False)
    model = cnnlab.create_model("lenet5", num_classes=3, in_channels=1, image_size=8)
    moved = init_from(model, base.path, quiet)
    assert moved["kept"] > 0 and torch.equal(model.state_dict()["conv1.weight"],
                                             base.load_model().state_dict()["conv1.weight"])
    assert model.fc.weight.shape[0] == 3  # the head: fresh, for its own classes
    with pytest.raises(CnnlabError, match="fit this model; that run trained lenet5: give --model lenet5"):
        init_from(cnnlab.create_model("mlp", num_classes=3, in_channels=1, image_size=8), base.path, quiet)
    with pytest.raises(CnnlabError, match="no trained weights there"):
        init_from(model, tmp_path / "nowhere", quiet)


def test_a_frozen_body_learns_nothing_until_thawed_and_discriminative_rates_reach_it(tmp_path):
    """--freeze-epochs: the head (and BatchNorm) learn while the body stays as it started; then
    everything learns, the body at --body-lr-scale of the head's rate."""
    from cnnlab.training import checkpoint as ckpt
    from cnnlab.training.optim import make_optimizer

    base = cnnlab.train(cnnlab.TrainConfig(model="resnet20", epochs=1, limit_train=200, out_dir=str(tmp_path),
                                           name="a"), log=quiet, report=False)
    start = base.load_model().state_dict()

    def fine_tune(name, epochs, freeze):
        cfg = cnnlab.TrainConfig(model="resnet20", epochs=epochs, limit_train=200, init_from=str(base.path),
                                 freeze_epochs=freeze, body_lr_scale=0.1, checkpoints=epochs,
                                 out_dir=str(tmp_path), name=name)
        return cnnlab.train(cfg, log=quiet, report=False)

    probe = fine_tune("probe", 2, 2)  # frozen throughout: a linear probe
    after, _ = ckpt.load_tensors(probe.path / "weights" / "epoch-002.safetensors")
    assert torch.equal(after["conv1.weight"], start["conv1.weight"])  # the body did not move
    assert not torch.equal(after["fc.weight"], base.load_model().state_dict()["fc.weight"])
    assert not torch.equal(after["bn1.weight"], start["bn1.weight"])  # BatchNorm kept learning
    thawed = fine_tune("thawed", 2, 1)
    first, _ = ckpt.load_tensors(thawed.path / "weights" / "epoch-001.safetensors")
    second, _ = ckpt.load_tensors(thawed.path / "weights" / "epoch-002.safetensors")
    assert torch.equal(first["conv1.weight"], start["conv1.weight"])
    assert not torch.equal(second["conv1.weight"], first["conv1.weight"])  # thawed in epoch 2
    model = cnnlab.create_model("resnet20", num_classes=10, in_channels=1, image_size=8)
    optimizer = make_optimizer(cnnlab.TrainConfig(model="resnet20", body_lr_scale=0.1), model)
    groups = optimizer.param_groups
    head = {id(p) for p in model.get_classifier().parameters()}
    for g in groups:
        in_head = {id(p) in head for p in g["params"]}
        assert len(in_head) == 1 and g["lr_scale"] == pytest.approx(1.0 if in_head == {True} else 0.1)
    # the log's lr is the schedule's (the head's), not the slower body's that comes first
    from cnnlab.training.trainer import schedule_lr

    for g in groups:
        g["lr"] = 0.05 * g["lr_scale"]
    assert groups[0]["lr_scale"] == pytest.approx(0.1) and schedule_lr(optimizer) == pytest.approx(0.05)


def test_the_transfer_section_compares_a_started_run_with_its_twin_from_scratch(tmp_path):
    from cnnlab.analysis import main_job_analyses, run_analysis

    base = cnnlab.train(cnnlab.TrainConfig(epochs=2, out_dir=str(tmp_path), name="base"), log=quiet,
                        report=False)
    run = cnnlab.train(cnnlab.TrainConfig(epochs=2, limit_train=100, init_from=str(base.path),
                                          out_dir=str(tmp_path), name="small"), log=quiet, report=False)
    assert "transfer" in {a.name for a in main_job_analyses(run.config)}
    assert "transfer" not in {a.name for a in main_job_analyses(base.config)}
    res = run_analysis(run, "transfer", log=quiet)
    scratch = next((run.path / "subruns").glob("scratch-*"))
    saved = cnnlab.load_run(scratch).config
    assert saved.init_from == "" and saved.limit_train == 100 and saved.seed == run.config.seed
    pred = np.load(run.path / "predictions.npz")
    assert res["accuracy"]["from weights"]["estimate"] == pytest.approx(
        (pred["probs"].argmax(1) == pred["y"]).mean())
    t = res["mcnemar"]
    assert t["a_only"] + t["b_only"] <= res["n_eval"] == len(pred["y"])
    html = cnnlab.render_report(run).read_text()
    assert "the start against scratch" in html and "starting from trained weights" in html
    with pytest.raises(CnnlabError, match="did not start from trained weights"):
        run_analysis(base, "transfer", log=quiet)


def test_an_analysis_of_a_started_run_trains_its_other_models_from_scratch(tmp_path):
    """Review defect: the main job on a folder with --init-from failed in the spurious section,
    whose shapes fastnet tried to load the main LeNet-5's start."""
    from cnnlab.analysis import run_analysis

    base = cnnlab.train(cnnlab.TrainConfig(epochs=1, out_dir=str(tmp_path), name="base"), log=quiet,
                        report=False)
    run = cnnlab.train(cnnlab.TrainConfig(epochs=1, limit_train=100, init_from=str(base.path),
                                          freeze_epochs=1, out_dir=str(tmp_path), name="small"),
                       log=quiet, report=False)
    run_analysis(run, "spurious", methods=("erm",), seeds=1, image_size=16, limit_train=100, epochs=1,
                 model="lenet5", log=quiet)
    res = run_analysis(run, "mlp_vs_cnn", models=("mlp", "lenet5"), log=quiet)
    assert [m["model"] for m in res["models"]] == ["mlp", "lenet5"]
    for sub in (run.path / "subruns").iterdir():
        cfg = cnnlab.load_run(sub).config
        assert (cfg.init_from, cfg.pretrained, cfg.freeze_epochs) == ("", "", 0), sub.name


def test_mlp_vs_cnn_on_a_started_run_trains_its_model_again_from_scratch(tmp_path):
    """Review defect: on a run started from weights, mlp-vs-cnn compared that run (95%) with
    other models from scratch (10%) and said the deeper network was worse."""
    from cnnlab.analysis import run_analysis

    base = cnnlab.train(cnnlab.TrainConfig(epochs=1, out_dir=str(tmp_path), name="base"), log=quiet,
                        report=False)
    run = cnnlab.train(cnnlab.TrainConfig(epochs=1, limit_train=100, init_from=str(base.path),
                                          out_dir=str(tmp_path), name="small"), log=quiet, report=False)
    res = run_analysis(run, "mlp_vs_cnn", models=("mlp", "lenet5"), log=quiet)
    lenet = next(r for r in res["models"] if r["model"] == "lenet5")
    assert res["retrained_from_scratch"] and lenet["run"] != str(run.path)
    assert cnnlab.load_run(lenet["run"]).config.init_from == ""


def test_mlp_vs_cnn_trains_a_run_of_the_lr_range_test_again_as_the_others_train(tmp_path):
    """The others train without the range test (TrainConfig.fresh): the run's own model must
    too, or the table compares two recipes."""
    from cnnlab.analysis import run_analysis

    run = cnnlab.train(cnnlab.TrainConfig(epochs=1, limit_train=200, lr_find=True, out_dir=str(tmp_path),
                                          name="found"), log=quiet, report=False)
    res = run_analysis(run, "mlp_vs_cnn", models=("mlp", "lenet5"), log=quiet)
    lenet = next(r for r in res["models"] if r["model"] == "lenet5")
    assert res["retrained_from_scratch"] and lenet["run"] != str(run.path)
    assert not cnnlab.load_run(lenet["run"]).config.lr_find


def test_the_quick_permutation_test_moves_to_shapes_when_the_runs_data_is_small(tmp_path):
    from cnnlab.analysis.permutation import SHAPES_TEST, quick

    small = cnnlab.train(cnnlab.TrainConfig(dataset="shapes", image_size=32, limit_train=200, epochs=1,
                                            model="lenet5", out_dir=str(tmp_path), name="few"),
                         log=quiet, report=False)
    assert quick(small)["dataset"] == SHAPES_TEST["dataset"]  # 200 images: seed noise would decide


def test_on_its_own_data_the_permutation_test_shuffles_for_the_runs_own_cnn():
    """LeNet-5 barely learns the 32x32 shapes (34%), so its drop could not show: by default the
    test takes the run's own CNN; an MLP run, or one started from weights, LeNet-5."""
    from types import SimpleNamespace

    from cnnlab.analysis.permutation import _own_cnn

    def own(**changes):
        return _own_cnn(SimpleNamespace(config=cnnlab.TrainConfig(dataset="shapes", **changes)))

    kwargs = {"widths": [8, 8, 8]}
    assert own(model="fastnet", model_kwargs=kwargs) == ("fastnet", kwargs)
    assert own(model="resnet20") == ("resnet20", None)
    assert own(model="mlp") == own(model="resnet20", init_from="runs/x") == ("lenet5", None)


def test_mlp_vs_cnn_compares_against_the_runs_own_model_when_it_is_not_named(tmp_path):
    """A fastnet run (the main CNN off the digit images) gave no claim: every comparison is
    against the run's model, which was not among the models compared."""
    from cnnlab.analysis import run_analysis
    from cnnlab.analysis.mlp_vs_cnn import claims

    run = cnnlab.train(cnnlab.TrainConfig(dataset="shapes", image_size=16, model="fastnet",
                                          model_kwargs={"widths": [8, 8, 8]}, limit_train=200,
                                          epochs=1, out_dir=str(tmp_path), name="f"),
                       log=quiet, report=False)
    res = run_analysis(run, "mlp_vs_cnn", models=("mlp",), log=quiet)
    assert [m["model"] for m in res["models"]] == ["mlp", "fastnet"] and res["reference"] == "fastnet"
    assert next(m for m in res["models"] if m["model"] == "fastnet")["run"] == str(run.path)  # reused
    assert claims(res)[0].claim.startswith("A convolution needs far fewer weights")


def test_the_main_cnn_is_lenet5_on_digit_images_and_a_small_fastnet_elsewhere(tmp_path):
    from cnnlab.pipeline import main_config

    def model(dataset, start=None, name="n"):
        c = main_config(dataset, 0, 0, name, str(tmp_path), "~/.cache/cnnlab", 0, start=start)
        return c.model, c.model_kwargs

    assert model("digits") == model("mnist") == model("fashion-mnist") == ("lenet5", {})
    assert model("shapes") == model("cifar10") == ("fastnet", {"widths": [16, 32, 64]})
    assert model("shapes", {"model": "lenet5"}) == ("lenet5", {})  # a named model stays
    assert model("shapes", {"model_kwargs": {"widths": [8, 8, 8]}}) == ("fastnet", {"widths": [8, 8, 8]})
    assert model("shapes", {"model_kwargs": {"bn_scale": False}}) == (  # added to, not replacing
        "fastnet", {"widths": [16, 32, 64], "bn_scale": False})
    # a folder of that name (a finished or interrupted run) keeps its model; so does a start
    (tmp_path / "old").mkdir()
    cnnlab.TrainConfig(dataset="shapes", model="resnet20").save(tmp_path / "old" / "config.yaml")
    assert model("shapes", name="old") == ("resnet20", {})
    assert model("shapes", {"init_from": str(tmp_path / "old")}) == ("resnet20", {})


def test_review_findings_on_started_balanced_and_wide_runs(tmp_path):
    """mlp-vs-cnn on a run with --model-kwargs builds the other models with their own
    arguments; spurious works on a run trained with --balance."""
    from cnnlab.analysis import run_analysis

    run = cnnlab.train(cnnlab.TrainConfig(model="fastnet", model_kwargs={"widths": [8, 16, 16]}, epochs=1,
                                          limit_train=200, balance="loss", out_dir=str(tmp_path), name="w"),
                       log=quiet, report=False)
    res = run_analysis(run, "mlp_vs_cnn", models=("mlp", "fastnet"), log=quiet)
    assert [m["model"] for m in res["models"]] == ["mlp", "fastnet"]
    run_analysis(run, "spurious", methods=("erm", "dro"), seeds=1, image_size=16, limit_train=100,
                 epochs=1, model="lenet5", log=quiet)


def test_pretrained_reads_a_cnnlab_runs_weights_and_keeps_its_own_normalization(tmp_path):
    from cnnlab.training.transfer import pretrained

    base = cnnlab.train(cnnlab.TrainConfig(epochs=1, out_dir=str(tmp_path), name="base"), log=quiet,
                        report=False)
    model = cnnlab.create_model("lenet5", num_classes=3, in_channels=1, image_size=8, mean=[0.2], std=[0.3])
    moved = pretrained(model, base.path / "weights" / "last.safetensors", quiet)
    assert moved["kept"] >= 8 and model.mean.item() == pytest.approx(0.2)
    assert torch.equal(model.conv1.weight, base.load_model().conv1.weight)
