"""Renamed config keys: an old key fails with one line naming its new name (run and training configs)."""

import pytest

from arc_kit.base.config import load_config
from arc_kit.base.errors import ArcKitError
from arc_kit.model.config import DataConfig, PretrainConfig
from arc_kit.run.config import InferenceConfig, TTTConfig, load_run_config


@pytest.mark.parametrize(
    "old, new",
    [
        ("ttt.augment=reference", "ttt.augmentation"),
        ("ttt.seed=3", "runtime.seed"),
        ("inference.seed=3", "runtime.seed"),
    ],
)
def test_a_renamed_run_key_fails_with_one_line_naming_the_new_key(old, new):
    with pytest.raises(ArcKitError) as e:
        load_run_config("cpu-demo", [old])
    message = str(e.value)
    assert "\n" not in message and f"'{old.split('=')[0]}'" in message and f"use '{new}'" in message


@pytest.mark.parametrize(
    "old, new",
    [
        ("data.num_augmentations=2", "data.augmentations"),
        ("data.crops=true", "data.canvas: crop"),
        ("data.crop_margin=1", "data.canvas_margin"),
    ],
)
def test_a_renamed_training_key_fails_with_one_line_naming_the_new_key(old, new):
    with pytest.raises(ArcKitError) as e:
        load_config(PretrainConfig, "pretrain-starter", [old])
    message = str(e.value)
    assert "\n" not in message and f"'{old.split('=')[0]}'" in message and f"use '{new}'" in message


def test_the_new_keys_load_and_renamed_tables_name_no_live_field():
    cfg = load_config(PretrainConfig, "pretrain-starter", ["data.canvas=crop", "data.canvas_margin=2"])
    assert cfg.data.crops and cfg.data.canvas_margin == 2
    with pytest.raises(ArcKitError, match="data.canvas"):
        load_config(PretrainConfig, "pretrain-starter", ["data.canvas=task"])
    run = load_run_config("cpu-demo", ["ttt.augmentation=reference", "runtime.seed=5"])
    assert run.ttt.augmentation == "reference" and run.runtime.seed == 5
    for cls in (DataConfig, TTTConfig, InferenceConfig):  # an old name is never also a field
        assert not set(cls.RENAMED) & {f for f in cls.__dataclass_fields__}
