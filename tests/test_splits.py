"""Instance counts per split on the real data, disjointness, holdouts and the leakage guard."""

from __future__ import annotations

import pytest
from helm.benchmark.scenarios.scenario import TEST_SPLIT, TRAIN_SPLIT, VALID_SPLIT, Input, Instance

from helm_dspy.errors import UserError
from helm_dspy.scenarios.head_qa import HeadQADSPyScenario
from helm_dspy.scenarios.medbullets import MedBulletsDSPyScenario
from helm_dspy.scenarios.medcalc_bench import MedCalcBenchDSPyScenario
from helm_dspy.scenarios.medec import MedecDSPyScenario
from helm_dspy.scenarios.splits import Splits, assert_no_leakage, carve_holdout, holdout_count, normalized_input

HELM_TEST_COUNTS = {
    MedCalcBenchDSPyScenario: 1047,
    MedecDSPyScenario: 597,
    HeadQADSPyScenario: 2675,
    MedBulletsDSPyScenario: 308,
}


@pytest.mark.parametrize("scenario_class,count", HELM_TEST_COUNTS.items(), ids=lambda v: getattr(v, "name", v))
def test_helm_test_counts(use_mirror, tmp_path, scenario_class, count):
    instances = scenario_class().get_instances(str(tmp_path))
    assert len(instances) == count
    assert {instance.split for instance in instances} == {TEST_SPLIT}
    ids = [instance.id for instance in instances]
    assert all(isinstance(i, str) for i in ids) and len(set(ids)) == count


def _assert_disjoint(splits: Splits):
    keys = {name: {normalized_input(i) for i in getattr(splits, name)} for name in ("train", "valid", "test")}
    assert not keys["train"] & keys["test"]
    assert not keys["valid"] & keys["test"]
    ids = [i.id for i in splits.train + splits.valid + splits.test]
    assert len(ids) == len(set(ids)), "instance ids must be unique across splits"
    assert {i.split for i in splits.train} == {TRAIN_SPLIT}
    assert {i.split for i in splits.valid} == {VALID_SPLIT}


def test_head_qa_upstream_splits(use_mirror, tmp_path):
    splits = HeadQADSPyScenario().get_splits(str(tmp_path))
    # 2,657 train and 1,366 dev questions minus image questions (68, 30) minus repeats of test questions.
    assert splits.sizes() == {"train": 2589 - 17, "valid": 1336 - 12, "test": 2675}
    assert "17 train and 12 valid" in splits.sources["dropped"]
    _assert_disjoint(splits)


def test_medec_validation_csv_is_split_for_optimizing(use_mirror, tmp_path):
    splits = MedecDSPyScenario().get_splits(str(tmp_path))
    assert splits.sizes() == {"train": 287, "valid": 287, "test": 597}
    _assert_disjoint(splits)


def test_medcalc_offline_needs_holdout_or_one_shot(use_mirror, tmp_path):
    with pytest.raises(UserError, match="holdout="):
        MedCalcBenchDSPyScenario().get_splits(str(tmp_path))
    one_shot = MedCalcBenchDSPyScenario(one_shot="true").get_splits(str(tmp_path))
    assert len(one_shot.train) + len(one_shot.valid) == 55 - 4  # 4 demo notes are also test notes
    _assert_disjoint(one_shot)
    held = MedCalcBenchDSPyScenario(holdout="100").get_splits(str(tmp_path))
    assert len(held.train) + len(held.valid) >= 100 and len(held.test) == 1047 - len(held.train) - len(held.valid)
    _assert_disjoint(held)


def test_medbullets_holdout_is_seeded_and_excluded_from_test(use_mirror, tmp_path):
    first = MedBulletsDSPyScenario(holdout="0.2").get_splits(str(tmp_path))
    again = MedBulletsDSPyScenario(holdout="0.2").get_splits(str(tmp_path))
    other_seed = MedBulletsDSPyScenario(holdout="0.2", holdout_seed=7).get_splits(str(tmp_path))
    assert [i.id for i in first.train] == [i.id for i in again.train]
    assert [i.id for i in first.train] != [i.id for i in other_seed.train]
    assert len(first.train) + len(first.valid) + len(first.test) == 308
    _assert_disjoint(first)
    evaluated = MedBulletsDSPyScenario(holdout="0.2").get_instances(str(tmp_path))
    assert [i.id for i in evaluated] == [i.id for i in first.test]
    # op5 holds 10 duplicated questions: a held-out question never keeps its twin in the test set.
    full = MedBulletsDSPyScenario().get_instances(str(tmp_path))
    assert len({normalized_input(i) for i in full}) == 298


def _instance(text: str, split: str = TEST_SPLIT) -> Instance:
    return Instance(input=Input(text=text), references=[], split=split)


def test_leakage_guard_names_count_and_two_examples():
    test = [_instance("What is  the dose?"), _instance("Which nerve?"), _instance("Third")]
    train = [_instance("what is the DOSE?", TRAIN_SPLIT), _instance("which   nerve?", TRAIN_SPLIT)]
    valid = [_instance("third", VALID_SPLIT), _instance("unrelated", VALID_SPLIT)]
    with pytest.raises(UserError) as error:
        assert_no_leakage(Splits(train, valid, test), "toy")
    message = str(error.value)
    assert "3 train/valid input(s)" in message and "'what is the dose?'" in message and "'which nerve?'" in message
    assert "\n" not in message
    assert_no_leakage(Splits(train[:0], valid[1:], test), "toy")


@pytest.mark.parametrize("spec,total,expected", [("50", 308, 50), ("0.2", 308, 62), (10, 100, 10), ("0.5", 10, 5)])
def test_holdout_count(spec, total, expected):
    assert holdout_count(spec, total) == expected


@pytest.mark.parametrize("spec", ["abc", "1.5", "0", "308", "1"])
def test_holdout_count_rejects(spec):
    with pytest.raises(UserError):
        holdout_count(spec, 308)


def test_carve_holdout_partitions_everything():
    pool = [_instance(f"q{i}") for i in range(40)]
    pool = [i.__class__(**{**i.__dict__, "id": f"id{n}"}) for n, i in enumerate(pool)]
    train, valid, rest = carve_holdout(pool, "0.25", seed=3)
    assert len(train) + len(valid) == 10 and len(rest) == 30
    assert sorted(i.id for i in train + valid + rest) == sorted(i.id for i in pool)
