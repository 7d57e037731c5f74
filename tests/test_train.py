import csv
import json

import pytest
import torch

import cnnlab
from cnnlab.config import TrainConfig
from cnnlab.errors import CnnlabError
from cnnlab.training import checkpoint as ckpt
from cnnlab.training.optim import lr_at


def tiny(tmp_path, **kw) -> TrainConfig:
    base = dict(dataset="digits", model="lenet5", epochs=3, batch_size=64, lr=0.05,
                crop_padding=1, out_dir=str(tmp_path / "runs"), name="r", limit_train=640)
    return TrainConfig(**(base | kw))


def test_training_on_digits_lowers_the_loss_and_beats_chance(tmp_path):
    run = cnnlab.train(tiny(tmp_path, epochs=4), log=lambda s: None, report=False)
    rows = list(csv.DictReader(open(run.path / "results.csv")))
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    assert run.metrics["accuracy"] > 0.5  # chance is 0.1


def test_same_seed_same_metrics(tmp_path):
    a = cnnlab.train(tiny(tmp_path, name="a", model="mlp"), log=lambda s: None, report=False)
    b = cnnlab.train(tiny(tmp_path, name="b", model="mlp"), log=lambda s: None, report=False)
    c = cnnlab.train(tiny(tmp_path, name="c", model="mlp", seed=1), log=lambda s: None, report=False)
    assert a.metrics["loss"] == b.metrics["loss"] and a.metrics["accuracy"] == b.metrics["accuracy"]
    assert a.metrics["loss"] != c.metrics["loss"]


FAST_TRICKS = dict(dataset="shapes", model="fastnet", model_kwargs={"widths": [8, 16, 16], "bn_scale": False},
                   lookahead=True, alternate_flips=True, bias_lr_scale=8.0, tta=2)


@pytest.mark.parametrize("kw", [{"ema": 0.0}, {"ema": 0.9}, FAST_TRICKS, FAST_TRICKS | {"optimizer": "muon"}],
                         ids=["plain", "ema", "fast", "muon"])
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, kw):
    kw = {"model": "resnet20"} | kw
    full = cnnlab.train(tiny(tmp_path, name="full", **kw), log=lambda s: None, report=False)

    def interrupt_after_epoch_2(line: str) -> None:
        if line.startswith("epoch   2/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cnnlab.train(tiny(tmp_path, name="cut", **kw), log=interrupt_after_epoch_2, report=False)
    resumed = cnnlab.train(tiny(tmp_path, name="cut", **kw), resume=True, log=lambda s: None,
                           report=False)
    a, _ = ckpt.load_tensors(full.path / "weights" / "last.safetensors")
    b, _ = ckpt.load_tensors(resumed.path / "weights" / "last.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert full.metrics["accuracy"] == resumed.metrics["accuracy"]
    # the energy goes on from where the first process left it, in results.csv and metrics.json
    kwh = [float(r["energy_kwh"]) for r in csv.DictReader(open(resumed.path / "results.csv"))]
    assert kwh == sorted(kwh) and kwh[0] > 0
    energy = resumed.metrics["energy"]
    assert energy["resumed_kwh"] == pytest.approx(kwh[1]) and energy["kwh"] > kwh[1]
    assert energy["j_per_train_image"] > 3.6e6 * kwh[1] / (3 * len(resumed.data().train))


def test_a_fused_optimizer_resumes_exactly_on_a_channels_last_model(tmp_path):
    """The file keeps optimizer state contiguous; a channels_last filter bank is not. Loaded as
    read, a fused Adam step walked the two in memory order and paired the wrong elements."""
    from cnnlab.training.state import TrainState, load_training_state, save_training_state

    def build():
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Flatten(), torch.nn.LazyLinear(2))
        net(torch.zeros(1, 3, 6, 6))
        net = net.to(memory_format=torch.channels_last)
        return net, torch.optim.AdamW(net.parameters(), lr=0.1, fused=True)

    def step(net, opt, seed):
        torch.manual_seed(seed)
        opt.zero_grad()
        net(torch.randn(4, 3, 6, 6)).square().sum().backward()
        opt.step()

    a, opt_a = build()
    for seed in range(3):
        step(a, opt_a, seed)
    save_training_state(tmp_path / "ck.safetensors", a, opt_a, None, TrainState())
    b, opt_b = build()
    load_training_state(tmp_path / "ck.safetensors", b, opt_b, None)
    filters = b[0].weight
    assert not filters.is_contiguous() and opt_b.state[filters]["exp_avg"].stride() == filters.stride()
    for seed in range(3, 6):
        step(a, opt_a, seed)
        step(b, opt_b, seed)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_resume_refuses_a_changed_config(tmp_path):
    cnnlab.train(tiny(tmp_path, epochs=1), log=lambda s: None, report=False)
    with pytest.raises(CnnlabError, match=r"refuses a changed config \(lr: 0.05 -> 0.1\)"):
        cnnlab.train(tiny(tmp_path, epochs=1, lr=0.1), resume=True, log=lambda s: None)


def test_resume_refuses_a_run_that_a_live_process_still_trains(tmp_path):
    import json
    import subprocess
    import sys

    run = cnnlab.train(tiny(tmp_path, epochs=1), log=lambda s: None, report=False)
    status = run.path / "status.json"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        from cnnlab.run import _process

        status.write_text(json.dumps(json.loads(status.read_text()) | {"state": "running",
                                                                       "process": _process(other.pid)}))
        with pytest.raises(CnnlabError, match=f"being trained by process {other.pid}"):
            cnnlab.train(tiny(tmp_path, epochs=1), resume=True, log=lambda s: None, report=False)
        # the same number, another process (a number reused after the trainer ended): no refusal
        status.write_text(json.dumps(json.loads(status.read_text()) | {
            "process": _process(other.pid) | {"started": "1"}}))
        cnnlab.train(tiny(tmp_path, epochs=1), resume=True, log=lambda s: None, report=False)
        # where there is no /proc, the number on this machine alone
        status.write_text(json.dumps(json.loads(status.read_text()) | {
            "state": "running", "process": _process(other.pid) | {"started": "", "boot": ""}}))
        with pytest.raises(CnnlabError, match="being trained by process"):
            cnnlab.train(tiny(tmp_path, epochs=1), resume=True, log=lambda s: None, report=False)
        status.write_text(json.dumps(json.loads(status.read_text()) | {"state": "running",
                                                                       "process": _process(other.pid)}))
    finally:
        other.kill()
        other.wait()
    # the process is gone (killed without a word): resuming is what the run needs
    assert cnnlab.train(tiny(tmp_path, epochs=1), resume=True, log=lambda s: None,
                        report=False).metrics["epochs"] == 1


def test_existing_run_folder_is_not_overwritten(tmp_path):
    cnnlab.train(tiny(tmp_path, epochs=1), log=lambda s: None, report=False)
    with pytest.raises(CnnlabError, match="already exists"):
        cnnlab.train(tiny(tmp_path, epochs=1), log=lambda s: None)


def test_nan_loss_stops_with_a_clear_error(tmp_path):
    with pytest.raises(CnnlabError, match="loss became (nan|inf).*lower --lr"):
        cnnlab.train(tiny(tmp_path, model="mlp", lr=1e6, epochs=2), log=lambda s: None)


def test_weights_broken_by_the_last_steps_stop_the_run(tmp_path, monkeypatch):
    """Found by probing: resnet20 at lr 1e6 for one epoch kept finite step losses, and the run
    ended "finished" with a model whose every output was NaN (predict and export said nan)."""
    import cnnlab.training.trainer as trainer

    def broken(model, data, cfg, device):
        return None, float("nan"), 0.1

    monkeypatch.setattr(trainer, "evaluate", broken)
    with pytest.raises(CnnlabError, match="validation loss became nan after epoch 1.*lower --lr"):
        cnnlab.train(tiny(tmp_path, epochs=1), log=lambda s: None)


def test_deferred_finite_check_names_the_first_bad_step_at_the_end_of_the_epoch():
    """The GPU path: no step waits to read its loss; the epoch's end reports the first bad one."""
    from cnnlab.training.trainer import FiniteGuard

    guard = FiniteGuard(cnnlab.TrainConfig(lr=0.5), epoch=2, defer=True)
    for step, value in enumerate([1.0, 2.0, float("inf"), float("nan"), 3.0]):
        guard.check(torch.tensor(value), step)  # nothing raised yet
    with pytest.raises(CnnlabError, match=r"loss became inf at epoch 3, step 3; lower --lr \(now 0.5\)"):
        guard.flush()
    fine = FiniteGuard(cnnlab.TrainConfig(), epoch=0, defer=True)
    fine.check(torch.tensor(1.0), 0)
    fine.flush()


def test_saved_run_predicts_like_the_trained_model(tmp_path):
    run = cnnlab.train(tiny(tmp_path, epochs=2), log=lambda s: None, report=False)
    loaded = cnnlab.load_run(run.path)
    again = loaded.evaluate(split="test")
    assert again["accuracy"] == pytest.approx(run.metrics["accuracy"])
    x = cnnlab.load_dataset("digits").test.x[:5]
    assert loaded.predict(x).shape == (5, 10)
    with pytest.raises(CnnlabError, match="the model reads"):
        loaded.predict(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))


def test_schedule_warms_up_then_decays_to_zero():
    lrs = [lr_at(s, 100, 10, 1.0, "cosine") for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False)) and lrs[-1] < 0.01
    assert lr_at(55, 100, 10, 1.0, "linear") == pytest.approx(0.5)


def test_every_recipe_loads():
    from pathlib import Path

    recipes = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))
    assert recipes
    for path in recipes:
        cfg = TrainConfig.load(path)
        assert cfg.model in cnnlab.list_models(), path
        assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_bad_config_values_are_refused():
    with pytest.raises(CnnlabError, match="optimizer must be sgd, adamw or muon"):
        TrainConfig(optimizer="lion")
    with pytest.raises(CnnlabError, match="unknown config keys"):
        TrainConfig.from_dict({"epoch": 3})


def test_a_format_1_run_opens_with_the_split_it_was_trained_on(tmp_path):
    import json

    import yaml

    run = cnnlab.train(tiny(tmp_path, epochs=1, seed=3, val_split=200.0), log=lambda s: None,
                       report=False)
    meta_path, cfg_path = run.path / "weights" / "meta.json", run.path / "config.yaml"
    meta = json.loads(meta_path.read_text())
    del meta["run_format"]  # what a run written before the format number looks like
    meta_path.write_text(json.dumps(meta))
    cfg = yaml.safe_load(cfg_path.read_text())
    for key in ("val_seed", "threads", "sync_bn"):
        del cfg[key]
    cfg_path.write_text(yaml.safe_dump(cfg))
    old = cnnlab.load_run(run.path)
    assert old.format == 1 and old.config.val_seed == 3  # format 1 split with the training seed
    meta["run_format"] = 99
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CnnlabError, match=r"run format 99\); this cnnlab reads formats up to 2"):
        cnnlab.load_run(run.path)


def test_train_outputs_hold_logits_losses_and_embeddings(tmp_path):
    run = cnnlab.train(tiny(tmp_path, epochs=1), log=lambda s: None, report=False)
    out = run.train_outputs()
    n = len(run.data().train)
    assert out["logits"].shape == (n, 10) and out["embeddings"].shape == (n, 84)
    assert out["losses"].shape == (n,) and (out["losses"] >= 0).all()
    assert (run.path / "analysis" / "train_outputs.npz").is_file()
    model = run.load_model()
    x = run.data().train.x[:4].float() / 255
    with torch.no_grad():
        assert torch.allclose(torch.from_numpy(out["logits"][:4]), model(x), atol=1e-5)


def test_the_thread_count_is_saved_with_the_run(tmp_path):
    caller = torch.get_num_threads()
    run = cnnlab.train(tiny(tmp_path, epochs=1, model="mlp", threads=caller + 1), log=lambda s: None,
                       report=False)
    assert run.config.threads == caller + 1 and run.metrics["environment"]["torch_threads"] == caller + 1
    assert torch.get_num_threads() == caller  # restored for the caller



def test_a_failed_run_says_why_in_its_folder_and_can_be_started_again(tmp_path):
    import json

    with pytest.raises(CnnlabError):
        cnnlab.train(tiny(tmp_path, model="mlp", lr=1e6, epochs=2), log=lambda s: None)
    status = json.loads((tmp_path / "runs" / "r" / "status.json").read_text())
    assert status["state"] == "failed" and "lower --lr" in status["message"]
    with pytest.raises(CnnlabError, match="unknown model"):
        cnnlab.train(tiny(tmp_path, name="s", model="nope"), log=lambda s: None)
    run = cnnlab.train(tiny(tmp_path, name="s", epochs=1), log=lambda s: None, report=False)
    assert run.metrics["epochs"] == 1  # a start that never checkpointed is a fresh start


def test_an_interrupted_run_names_its_folder(tmp_path):
    from cnnlab.errors import Interrupted

    def stop(line: str) -> None:
        if line.startswith("epoch"):
            raise KeyboardInterrupt

    with pytest.raises(Interrupted) as caught:
        cnnlab.train(tiny(tmp_path, epochs=2), log=stop)
    assert str(caught.value.run_dir) == str(tmp_path / "runs" / "r")


def test_ctrl_c_while_the_run_is_evaluated_says_how_to_continue(tmp_path, monkeypatch):
    """Found by probing: stopped in its final evaluation, a run printed no way on and its status
    stayed "running"; --resume evaluates it again."""
    import cnnlab.run as run_module
    from cnnlab.errors import Interrupted

    finish = run_module.finish_run

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "finish_run", stopped)
    with pytest.raises(Interrupted) as caught:
        cnnlab.train(tiny(tmp_path, epochs=1), log=lambda s: None, report=False)
    folder = tmp_path / "runs" / "r"
    assert caught.value.resume_with == f"cnnlab train --resume {folder}"
    assert json.loads((folder / "status.json").read_text())["state"] == "interrupted"
    monkeypatch.setattr(run_module, "finish_run", finish)
    run = cnnlab.train(tiny(tmp_path, epochs=1), resume=True, log=lambda s: None, report=False)
    assert run.metrics["epochs"] == 1


def test_time_to_accuracy_is_the_first_crossing_in_training_seconds(tmp_path):
    from cnnlab.training.state import time_to_accuracy

    history = [{"val_acc": 0.80, "train_elapsed": 10.0}, {"val_acc": None, "train_elapsed": 20.0},
               {"val_acc": 0.91, "train_elapsed": 30.0}, {"val_acc": 0.89, "train_elapsed": 40.0}]
    assert time_to_accuracy(history) == {"0.85": 30.0, "0.90": 30.0, "0.93": None, "0.94": None}
    run = cnnlab.train(tiny(tmp_path, epochs=2), log=lambda s: None, report=False)
    tta = run.metrics["time_to_accuracy"]
    assert set(tta) == {"0.85", "0.90", "0.93", "0.94"}
    assert all(v is None or 0 < v <= run.metrics["train_time_s"] for v in tta.values())
