import pytest

from kd_snn import config as C
from kd_snn.errors import KdsnnError


def test_shipped_configs_load_and_validate():
    names = C.builtin_configs()
    assert {"digits", "fashion_mnist", "cifar100_resnet19", "cifar10dvs"} <= set(names)
    for name in names:
        cfg = C.load_config(name)
        assert cfg.data.time_steps > 0


def test_paper_settings_in_cifar100_config():
    cfg = C.load_config("cifar100_resnet19")
    assert cfg.student.model == "resnet19" and cfg.student.width == 8
    assert cfg.loss.preset == "samd_nld" and cfg.loss.tau_nld == 2.0 and cfg.loss.w_nld == 0.9
    assert C.load_config("cifar10dvs").data.time_steps == 10


def test_overrides_any_field_with_typed_values():
    cfg = C.load_config("digits", ["student.epochs=3", "data.time_steps=2", "neuron.beta=0.75",
                                   "loss.weights={samd: 0.5}", "seed=7"])
    assert cfg.student.epochs == 3 and cfg.data.time_steps == 2 and cfg.neuron.beta == 0.75
    assert cfg.loss.weights == {"samd": 0.5} and cfg.seed == 7


@pytest.mark.parametrize("override, words", [
    ("student.epcohs=3", "unknown config key 'student.epcohs'"),
    ("data.time_steps=abc", "'data.time_steps' must be an integer"),
    ("data.time_steps=0", "'data.time_steps' must be > 0"),
    ("neuron.beta=1.5", "'neuron.beta' must lie in [0, 1]"),
    ("student.optimizer=adam", "'student.optimizer' must be one of"),
    ("loss.samd_scaling=max", "'loss.samd_scaling' must be one of"),
    ("amp=maybe", "'amp' must be true or false"),
    ("nokey", "must look like key.sub=value"),
])
def test_bad_values_are_refused_by_name(override, words):
    with pytest.raises(KdsnnError) as err:
        C.load_config("digits", [override])
    assert words in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_config_name_and_bad_yaml(tmp_path):
    with pytest.raises(KdsnnError, match="unknown config 'nope'"):
        C.load_config("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(KdsnnError, match="not valid YAML"):
        C.load_config(str(bad))


def test_yaml_round_trip():
    cfg = C.load_config("digits", ["seed=3"])
    import yaml
    assert C.from_dict(yaml.safe_load(cfg.to_yaml())) == cfg
