"""Config loading: typed sections, invariants, original VITS key aliases, shipped configs."""

import json

import pytest

from nixdistill.config import (
    AudioConfig, ConfigError, check_upsampling, config_from_raw, load_config, resolve_config_path,
)

VITS_LJS = {
    "train": {"log_interval": 200, "eval_interval": 1000, "seed": 1234, "epochs": 20000,
              "learning_rate": 2e-4, "betas": [0.8, 0.99], "eps": 1e-9, "batch_size": 64,
              "fp16_run": True, "lr_decay": 0.999875, "segment_size": 8192, "init_lr_ratio": 1,
              "warmup_epochs": 0, "c_mel": 45, "c_kl": 1.0},
    "data": {"training_files": "filelists/ljs_audio_text_train_filelist.txt.cleaned",
             "validation_files": "filelists/ljs_audio_text_val_filelist.txt.cleaned",
             "text_cleaners": ["english_cleaners2"], "max_wav_value": 32768.0,
             "sampling_rate": 22050, "filter_length": 1024, "hop_length": 256,
             "win_length": 1024, "n_mel_channels": 80, "mel_fmin": 0.0, "mel_fmax": None,
             "add_blank": True, "n_speakers": 0, "cleaned_text": True},
    "model": {"inter_channels": 192, "hidden_channels": 192, "upsample_rates": [8, 8, 2, 2]},
}


def test_original_vits_json_loads_unchanged(tmp_path):
    p = tmp_path / "config.json"
    p.write_text(json.dumps(VITS_LJS))
    cfg = load_config(p)
    assert cfg.audio.sample_rate == VITS_LJS["data"]["sampling_rate"]
    assert cfg.audio.n_fft == VITS_LJS["data"]["filter_length"]
    assert cfg.audio.n_mels == VITS_LJS["data"]["n_mel_channels"]
    assert cfg.audio.f_max is None
    assert cfg.text.add_blank is True
    assert cfg.train.loss_weights == {"mel": 45, "kl": 1.0}
    assert cfg.train.precision == "fp16"
    assert cfg.train.betas == (0.8, 0.99)
    assert cfg.model["upsample_rates"] == [8, 8, 2, 2]
    assert cfg.data.train_filelist.endswith("train_filelist.txt.cleaned")


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match="hop_lenght"):
        config_from_raw({"audio": {"hop_lenght": 256}})


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match="sample_rate"):
        config_from_raw({"audio": {"sample_rate": "22050"}})


def test_segment_size_must_be_multiple_of_hop():
    with pytest.raises(ConfigError, match="multiple of audio.hop_length"):
        config_from_raw({"audio": {"hop_length": 256}, "train": {"segment_size": 8000}})


def test_audio_invariants():
    with pytest.raises(ConfigError, match="win_length"):
        AudioConfig(n_fft=512, win_length=1024)
    with pytest.raises(ConfigError, match="Nyquist"):
        AudioConfig(sample_rate=8000, f_max=8000.0)


def test_upsampling_invariant():
    check_upsampling([8, 8, 2, 2], 256)
    with pytest.raises(ConfigError, match="prod\\(upsample_rates\\) = 128"):
        check_upsampling([8, 8, 2], 256)


def test_overrides_and_missing_reference(tmp_path):
    cfg = config_from_raw({}, overrides={"train": {"max_steps": 3}})
    assert cfg.train.max_steps == 3
    with pytest.raises(ConfigError, match="neither a file nor a config shipped"):
        resolve_config_path(tmp_path / "nope.json")


def test_shipped_configs_load():
    from importlib import resources

    root = resources.files("nixdistill.configs")
    found = [p for sub in ("tiny", "teachers", "students", "presets")
             for p in root.joinpath(sub).iterdir() if p.name.endswith(".json")]
    loaded = 0
    for p in found:
        raw = json.loads(p.read_text())
        if "stages" in raw:  # pipeline presets are checked by the pipeline tests
            continue
        cfg = load_config(str(p))
        assert cfg.train.batch_size > 0 and cfg.model, p.name
        loaded += 1
    assert loaded >= 15  # every shipped teacher, student and tiny config
