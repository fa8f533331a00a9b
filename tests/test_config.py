"""Config composition and the one-line errors for bad overrides."""
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from runner import experiments
from runner.cli import _user_overrides, help_text
from runner.config_check import check_overrides
from runner.errors import OptrunError
from runner.results import run_name

EXPERIMENTS = experiments.ids()


@pytest.mark.parametrize("experiment", EXPERIMENTS)
@pytest.mark.parametrize("scale", ["smoke", "paper"])
def test_every_experiment_composes_at_both_scales(make_cfg, stand_in, experiment, scale):
    cfg = stand_in(make_cfg(f"experiment={experiment}", f"scale={scale}"))  # no data files on this machine
    assert cfg.experiment_id == experiment and cfg.scale == scale
    trainer = OmegaConf.to_container(cfg.trainer, resolve=True)  # as runner.dispatch.build reads it
    trainer.pop("components", None)  # what the trainer needs, read by runner.dispatch.build, not an argument
    instantiate(trainer)  # the trainer config is complete and valid


def test_paper_scale_uses_the_official_split_mnist_setting(make_cfg):
    cfg = make_cfg("experiment=stability_gap", "scale=paper")
    assert cfg.dataset.base.name == "mnist" and list(cfg.model.hidden) == [400, 400]
    assert cfg.trainer.batch_size == 256 and cfg.trainer.epochs_per_task == 10 and cfg.trainer.memory_size == 2000
    assert cfg.optimizer.lr == 0.01 and cfg.trainer.lw_new == 0.3
    assert cfg.dataset._target_.endswith(".split") and cfg.dataset.base.stand_in is False
    # a group override on the command line still wins over the scale file's switch
    cfg = make_cfg("experiment=stability_gap", "scale=paper", "dataset=rotated_digits")
    assert cfg.dataset.base.name == "digits" and cfg.dataset._target_.endswith("rotated")


def test_command_line_values_win_over_experiment_and_preset(make_cfg):
    cfg = make_cfg("experiment=stability_gap", "scale=paper", "optimizer.lr=0.2", "trainer.memory_size=10")
    assert cfg.optimizer.lr == 0.2 and cfg.trainer.memory_size == 10


@pytest.mark.parametrize("overrides, pattern", [
    (["optimizer=nonexistent"], r"optimizer=nonexistent: no such option .*available: adam, adamw, .*none.*sgd"),
    (["experiment=stability_gaps"], r"did you mean 'stability_gap'"),
    (["optimizer.lrr=0.1"], r"optimizer.lrr: unknown key \(did you mean 'optimizer.lr'\?\)"),
    (["optimizer.lr=abc"], r"optimizer.lr='abc': expected a number"),
    (["trainer.batch_size=1.5"], r"trainer.batch_size=1.5: expected an integer"),
    (["force=maybe"], r"force='maybe': expected a boolean"),
    (["-m", "seed=0,x"], r"seed='x': expected an integer"),
    (["hooks=[continual_eval,nope]"], r"hooks=nope: no such option"),
    (["seed=[1"], r"cannot parse overrides"),
])
def test_bad_overrides_give_one_line_naming_the_key(overrides, pattern):
    with pytest.raises(OptrunError, match=pattern) as e:
        check_overrides(_user_overrides(overrides))
    assert "\n" not in str(e.value)


def test_good_overrides_pass_the_check():
    check_overrides(["experiment=stability_gap", "seed=0,1,2", "optimizer.lr=1", "trainer.method=er,finetune",
                     "+extra.key=3", "scale=paper", "hooks=[continual_eval]", "hydra.verbose=true"])


def test_help_lists_every_experiment_with_a_line():
    text = help_text()
    for e in EXPERIMENTS:
        line = next(line for line in text.splitlines() if line.strip().startswith(e))
        assert len(line.split(maxsplit=1)) == 2
    assert "optimizer" in text and "sgd" in text


def test_run_names_are_deterministic_and_safe():
    assert run_name("") == "default"
    assert run_name("seed=1,trainer.method=er") == "seed=1,trainer.method=er"
    assert "/" not in run_name("dataset.base.data_dir=/a/b")
    long = run_name("x=" + "a" * 500)
    assert len(long) <= 120 and long == run_name("x=" + "a" * 500)
