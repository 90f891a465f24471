import json
from dataclasses import dataclass, field

import pytest

from stage_io.run_identity import (
    RunIdentityError,
    check_run_identity,
    compare_identity,
    config_identity,
    flatten,
    read_identity,
)


@dataclass
class Optim:
    lr: float = 0.1
    betas: tuple = (0.9, 0.95)


@dataclass
class Logging:
    every: int = 10
    project: str = "demo"


@dataclass
class Cfg:
    output_dir: str = "runs/a"
    batch_size: int = 8
    optim: Optim = field(default_factory=Optim)
    logging: Logging = field(default_factory=Logging)
    note: str | None = None


RESUMABLE = ("output_dir", "batch_size", "logging")


def test_config_identity_is_flat_json_minus_resumable_keys_and_sections():
    identity = config_identity(Cfg(), RESUMABLE)
    assert identity == {"optim.lr": 0.1, "optim.betas": [0.9, 0.95], "note": None}
    assert config_identity(Cfg(output_dir="elsewhere", batch_size=2, logging=Logging(5, "x")), RESUMABLE) == identity
    assert flatten({"a": {"b": {"c": 1}}, "d": (1, 2), "e": {}}) == {"a.b.c": 1, "d": [1, 2]}


def test_first_run_records_then_an_unchanged_config_resumes(tmp_path):
    path = tmp_path / "out" / "run.json"
    identity = config_identity(Cfg(), RESUMABLE)
    check_run_identity(path, identity)
    assert json.loads(path.read_text()) == identity
    assert not [p for p in path.parent.iterdir() if p.name != "run.json"]  # no temporary file left
    check_run_identity(path, config_identity(Cfg(batch_size=64), RESUMABLE))  # a resumable change: fine
    check_run_identity(path, identity, create=False)


def test_a_changed_config_names_the_file_the_keys_and_what_to_do(tmp_path):
    path = tmp_path / "run.json"
    check_run_identity(path, config_identity(Cfg(), RESUMABLE))
    changed = config_identity(Cfg(optim=Optim(lr=0.2), note="x"), RESUMABLE)
    with pytest.raises(RunIdentityError) as caught:
        check_run_identity(path, changed, start_over="set fresh=true to start over")
    message = str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert message.startswith(f"{path}: made by a run with a different config")
    assert 'changed: note: null -> "x", optim.lr: 0.1 -> 0.2); set fresh=true to start over' in message
    assert json.loads(path.read_text()) == config_identity(Cfg(), RESUMABLE)  # the record is kept


def test_long_lists_of_changes_and_long_values_are_cut():
    saved = {f"k{i}": i for i in range(8)} | {"template": "a" * 500}
    current = {f"k{i}": i + 1 for i in range(8)} | {"template": "b" * 500}
    with pytest.raises(RunIdentityError, match=r"k4: 4 -> 5 and 4 more\)") as caught:
        compare_identity("ckpt", saved, current, start_over="x")
    assert "template" not in str(caught.value)
    with pytest.raises(RunIdentityError) as caught:
        compare_identity("ckpt", {"template": "a" * 500}, {"template": "b" * 500}, start_over="x")
    assert f'"{"a" * 76}...' in str(caught.value) and "a" * 100 not in str(caught.value)


def test_a_key_new_on_one_side_with_a_null_value_is_no_change(tmp_path):
    path = tmp_path / "run.json"
    check_run_identity(path, {"a": 1})
    check_run_identity(path, {"a": 1, "added_later": None})
    with pytest.raises(RunIdentityError, match=r"added_later: null -> 3"):
        check_run_identity(path, {"a": 1, "added_later": 3})


def test_create_false_only_checks(tmp_path):
    path = tmp_path / "run.json"
    check_run_identity(path, {"a": 1}, create=False)
    assert not path.exists()


def test_entries_are_checked_and_added_one_by_one(tmp_path):
    path = tmp_path / "run.json"
    check_run_identity(path, {"model": "m1"}, entry="arm:a")
    check_run_identity(path, {"model": "m2"}, entry="arm:b")  # a new entry is added
    assert read_identity(path) == {"arm:a": {"model": "m1"}, "arm:b": {"model": "m2"}}
    assert read_identity(path, "arm:c") is None
    with pytest.raises(RunIdentityError, match=r"\(arm:a\): made by a run with a different config \(changed: model"):
        check_run_identity(path, {"model": "m3"}, entry="arm:a")


def test_a_damaged_record_is_an_error_naming_it(tmp_path):
    path = tmp_path / "run.json"
    path.write_text("{not json")
    with pytest.raises(RunIdentityError, match="run.json: not valid JSON"):
        check_run_identity(path, {"a": 1})
