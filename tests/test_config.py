import json

import pytest

from enas import config as C


def test_every_preset_loads_and_round_trips():
    for name in C.PRESETS:
        cfg = C.load_config(name)
        assert C.from_dict(json.loads(json.dumps(C.to_dict(cfg)))) == cfg


def test_overrides_are_coerced_to_the_annotated_type():
    cfg = C.load_config("tiny", overrides=["shared.lr_max=0.2", "shared.epochs=7", "data.flip=false",
                                           "space_cfg.ops=identity,avg_pool_3x3", "space=macro"])
    assert cfg.shared.lr_max == 0.2 and cfg.shared.epochs == 7 and cfg.data.flip is False
    assert cfg.space_cfg.ops == ("identity", "avg_pool_3x3") and cfg.space == "macro"


def test_all_problems_reported_at_once_with_valid_keys():
    with pytest.raises(C.ConfigError) as e:
        C.load_config(overrides=["shared.nope=1", "net.channels=abc", "bogus.x=1", "controller.kind=ppo"])
    msg = str(e.value)
    assert "shared.nope: unknown setting; valid settings of shared: epochs" in msg
    assert "net.channels: expected an integer" in msg
    assert "unknown section 'bogus'" in msg
    assert "controller.kind: expected enas or random" in msg
    assert len(e.value.errors) == 4


def test_file_then_overrides(tmp_path):
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"shared": {"epochs": 3, "lr_max": 0.3}}))
    cfg = C.load_config("tiny", file=f, overrides=["shared.epochs=4"])
    assert cfg.shared.epochs == 4 and cfg.shared.lr_max == 0.3


def test_per_space_preset_variants():
    assert C.load_config("tiny", space="rnn").data.source == "pydoc"
    assert C.load_config("default", space="macro").space == "macro"
    with pytest.raises(C.ConfigError, match="is for the micro space"):
        C.load_config("micro-search", space="rnn")


def test_cosine_schedule_restarts():
    from enas.build import lr_at
    o = C.OptimConfig(lr_max=0.05, lr_min=0.0005, lr_t0=10, lr_tmul=2)
    assert lr_at(0, o) == pytest.approx(0.05)
    assert lr_at(10, o) == pytest.approx(0.05)  # restart after 10 epochs
    assert lr_at(30, o) == pytest.approx(0.05)  # then after 20 more
    assert lr_at(9, o) < 0.003 and lr_at(29, o) < 0.002


@pytest.mark.parametrize("value", ["٣", "+0", "0_0", "1.5", "0x10"])
def test_integer_settings_take_ascii_digits_only(value):
    with pytest.raises(C.ConfigError, match="run.seed"):
        C.load_config(overrides=[f"run.seed={value}"])


@pytest.mark.parametrize("value", ["٣.5", "1_0.0", "nan"])
def test_number_settings_take_ascii_numbers_only(value):
    with pytest.raises(C.ConfigError, match="shared.lr_max"):
        C.load_config(overrides=[f"shared.lr_max={value}"])
