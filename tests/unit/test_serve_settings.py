"""The service's settings take their default paths from the dataset's layout, read once per settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers import REPO_ROOT
from serving.settings import ServeSettings
from tabloop import layout
from tabloop.errors import ConfigError
from tabloop.layout import DatasetsConfig, Layout

DATASETS = layout.load_datasets(REPO_ROOT).datasets


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Each read of configs/datasets.yaml from now on, in the repository, with no service settings in the
    environment."""
    monkeypatch.chdir(REPO_ROOT)
    for name in list(os.environ):
        if name.startswith("TABLOOP_SERVE_") or name in ("TABLOOP_DATASET", "PORT"):
            monkeypatch.delenv(name)
    done: list[Path] = []
    read = layout.load_datasets

    def counted(root: Path = Path()) -> DatasetsConfig:
        done.append(root)
        return read(root)

    monkeypatch.setattr(layout, "load_datasets", counted)
    return done


def paths(settings: ServeSettings) -> tuple[Path, Path, Path, str]:
    return settings.registry_config, settings.contract_config, settings.cache_dir, settings.prediction_log_url


@pytest.mark.parametrize("dataset", [None, *DATASETS])
def test_every_default_path_comes_from_one_read_of_the_datasets_file(reads: list[Path], dataset: str | None) -> None:
    settings = ServeSettings(dataset=dataset)
    assert len(reads) == 1
    expected = Layout.of(dataset)
    assert paths(settings) == (
        expected.registry_config,
        expected.data_config,
        expected.cache,
        expected.prediction_log_url,
    )


def test_a_dataset_named_in_the_environment_is_read_once(reads: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TABLOOP_DATASET", DATASETS[-1])
    settings = ServeSettings()
    assert len(reads) == 1
    assert settings.registry_config == Layout.of(DATASETS[-1]).registry_config


def test_settings_that_name_every_path_read_nothing(reads: list[Path], tmp_path: Path) -> None:
    settings = ServeSettings(
        registry_config=tmp_path / "registry.yaml",
        contract_config=tmp_path / "data.yaml",
        cache_dir=tmp_path / "cache",
        prediction_log_url=f"sqlite:///{tmp_path}/log.db",
    )
    assert reads == []
    assert settings.cache_dir == tmp_path / "cache"


def test_each_new_settings_reads_the_file_again(reads: list[Path]) -> None:
    """No cache outlives one settings: a dataset added to the file meanwhile is seen by the next settings."""
    first, second = ServeSettings(), ServeSettings()
    assert len(reads) == 2
    assert paths(first) == paths(second)


def test_an_unknown_dataset_is_still_refused_by_name(reads: list[Path]) -> None:
    with pytest.raises(ConfigError, match="dataset 'nowhere' is not in"):
        ServeSettings(dataset="nowhere")
    assert len(reads) == 1
