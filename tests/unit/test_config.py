import pytest
import yaml

from microfair.config import ConfigError, init_local_config, load_config


def test_init_writes_a_config_that_loads(tmp_path):
    path = init_local_config(tmp_path / "f")
    cfg = load_config(path)
    assert cfg.ledger.url.startswith("sqlite:///")
    assert cfg.landing_zones[0].path.is_dir()
    assert cfg.naming.policy == "flag"  # a bad name never holds back the backup


def test_env_var_is_used(tmp_path, monkeypatch):
    path = init_local_config(tmp_path / "f")
    monkeypatch.setenv("MICROFAIR_CONFIG", str(path))
    assert load_config().facility.name


@pytest.mark.parametrize("mutate, key, reason", [
    (lambda d: d["naming"].update(policy="delete"), "naming.policy", "Input should be"),
    (lambda d: d["landing_zones"][0].update(stability_seconds=-1), "landing_zones.0.stability_seconds", "greater"),
    (lambda d: d.update(colour="blue"), "colour", "unknown key"),
    (lambda d: d["qc"].update(saturation_max_fraction=2), "qc.saturation_max_fraction", "less than"),
    (lambda d: d.pop("storage"), "storage", "Field required"),
])
def test_bad_key_or_value_names_the_key_and_reason(tmp_path, mutate, key, reason):
    path = init_local_config(tmp_path / "f")
    data = yaml.safe_load(path.read_text())
    data.setdefault("qc", {})
    mutate(data)
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert f"{key}: " in str(err.value) and reason in str(err.value)


def test_missing_file_and_bad_yaml(tmp_path, monkeypatch):
    monkeypatch.delenv("MICROFAIR_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="MICROFAIR_CONFIG"):
        load_config()
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("facility: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
