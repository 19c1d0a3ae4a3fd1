"""Config validation and lookup."""

import json

import pytest

from dcan_jax import config as config_lib


def test_paper_config_has_paper_settings():
    config = config_lib.get_config("paper")
    assert config.encoder_widths == (384, 256)
    assert config.discriminator_widths == (16,)
    assert config.batch_size == 16
    assert config.cluster_sample_size >= 600
    assert config.n_steps == 500
    assert config.optimizer == "sgd"
    assert 1e-5 <= config.learning_rate <= 1e-3
    assert config.activation == "tanh"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"n_clusters": 1}, "n_clusters=1 should be >= 2"),
        ({"batch_size": 0}, "batch_size=0 should be a positive int"),
        ({"cluster_method": "dbscan"}, "cluster_method='dbscan' is not supported"),
        ({"encoder_widths": (10, -1)}, "should contain only positive ints"),
        ({"encoder_widths": [10, 5]}, "should be a non-empty tuple"),
        ({"cluster_momentum": 1.0}, r"cluster_momentum=1.0 should be in \[0, 1\)"),
        ({"learning_rate": 0.0}, "learning_rate=0.0 should be > 0"),
        ({"reconstruction_weight": -1.0}, "reconstruction_weight=-1.0 should be >= 0"),
        ({"pretrain_input_noise": 1.0}, r"pretrain_input_noise=1.0 should be in \[0, 1\)"),
        ({"pretrain_schedule": "linear"}, "pretrain_schedule='linear' is not supported"),
    ],
)
def test_invalid_values_raise(changes, message):
    with pytest.raises((ValueError, TypeError), match=message):
        config_lib.get_config("paper", **changes)


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ValueError, match=r"Unknown config keys \['n_cluster'\]"):
        config_lib.get_config("paper", n_cluster=3)


def test_unknown_name_lists_names():
    with pytest.raises(ValueError, match="Unknown config 'papr'.*'paper'"):
        config_lib.get_config("papr")


def test_config_file_round_trip(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"n_clusters": 4, "encoder_widths": [32, 8]}))
    config = config_lib.load_config_file(str(path))
    assert config.n_clusters == 4
    assert config.encoder_widths == (32, 8)


def test_config_file_errors(tmp_path):
    with pytest.raises(ValueError, match="Cannot read config file"):
        config_lib.load_config_file(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        config_lib.load_config_file(str(bad))


def test_configs_are_hashable_and_equal_by_value():
    a = config_lib.get_config("paper", n_steps=3)
    b = config_lib.get_config("paper", n_steps=3)
    assert a == b
    assert hash(a) == hash(b)
