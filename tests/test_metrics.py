"""The corrected MedCalc and MEDEC metrics on real rows, next to HELM's original figures."""

from __future__ import annotations

import pytest
from helm.benchmark.adaptation.adapter_spec import AdapterSpec
from helm.benchmark.adaptation.request_state import RequestState
from helm.common.request import GeneratedOutput, Request, RequestResult

from helm_dspy.metrics.medcalc_bench import FixedMedCalcBenchMetric
from helm_dspy.metrics.medec import FixedMedecMetric
from helm_dspy.scenarios.medcalc_bench import MedCalcBenchDSPyScenario
from helm_dspy.scenarios.medec import MedecDSPyScenario


def _state(instance, answer: str) -> RequestState:
    request = Request(model="simple/model1", model_deployment="simple/model1", prompt="")
    result = RequestResult(
        success=True, embedding=[], completions=[GeneratedOutput(text=answer, logprob=0, tokens=[])], cached=False
    )
    return RequestState(
        instance=instance,
        reference_index=None,
        request_mode=None,
        train_trial_index=0,
        output_mapping=None,
        request=request,
        result=result,
        num_train_instances=0,
        prompt_truncated=False,
    )


def _scores(metric, instance, answer: str) -> dict[str, float]:
    stats = metric.evaluate_generation(AdapterSpec(), _state(instance, answer), None, "")
    return {stat.name.name: stat.sum for stat in stats}


@pytest.fixture(scope="module")
def medcalc_test(mirror_dir, tmp_path_factory):
    import os

    os.environ["HELM_DSPY_DATA_DIR"] = str(mirror_dir)
    return MedCalcBenchDSPyScenario().get_instances(str(tmp_path_factory.mktemp("medcalc")))


@pytest.mark.parametrize("category", ["lab", "dosage"])
def test_medcalc_range_categories_scored_by_fixed_metric_only(medcalc_test, category):
    rows = [i for i in medcalc_test if i.extra_data["category"] == category]
    assert len(rows) == {"lab": 327, "dosage": 40}[category]
    instance = rows[0]
    lower, upper = float(instance.extra_data["lower_limit"]), float(instance.extra_data["upper_limit"])
    inside = f"{(lower + upper) / 2:.4f}"
    outside = f"{upper + abs(upper) + 1:.4f}"
    assert _scores(FixedMedCalcBenchMetric(), instance, inside) == {
        "medcalc_bench_accuracy": 0,
        "medcalc_bench_accuracy_fixed": 1,
    }
    assert _scores(FixedMedCalcBenchMetric(), instance, outside)["medcalc_bench_accuracy_fixed"] == 0


def test_medcalc_row_512_exact_answer(medcalc_test):
    """NOTES.md: row 512 answered exactly (103.8) still scored 0 under HELM."""
    instance = next(i for i in medcalc_test if i.id == "512")
    gold = instance.references[0].output.text
    assert _scores(FixedMedCalcBenchMetric(), instance, gold) == {
        "medcalc_bench_accuracy": 0,
        "medcalc_bench_accuracy_fixed": 1,
    }


def test_medcalc_other_categories_unchanged(medcalc_test):
    for category in ("risk", "physical", "date", "severity", "diagnosis"):
        instance = next(i for i in medcalc_test if i.extra_data["category"] == category)
        gold = instance.references[0].output.text
        scores = _scores(FixedMedCalcBenchMetric(), instance, gold)
        assert scores["medcalc_bench_accuracy"] == scores["medcalc_bench_accuracy_fixed"] == 1, category


@pytest.fixture(scope="module")
def medec_test(mirror_dir, tmp_path_factory):
    import os

    os.environ["HELM_DSPY_DATA_DIR"] = str(mirror_dir)
    return MedecDSPyScenario().get_instances(str(tmp_path_factory.mktemp("medec")))


def test_medec_right_sentence_id_gets_credit(medec_test):
    flagged = next(i for i in medec_test if i.references[0].output.text != "CORRECT")
    gold = flagged.references[0].output.text
    sentence_id = gold.split()[0]
    scores = _scores(FixedMedecMetric(), flagged, f"{sentence_id} The corrected sentence.")
    assert scores["medec_error_flag_accuracy"] == 1
    assert scores["medec_error_sentence_accuracy"] == 0  # HELM 0.5.16: int() on the whole gold string
    assert scores["medec_error_sentence_accuracy_fixed"] == 1
    wrong = _scores(FixedMedecMetric(), flagged, f"{int(sentence_id) + 1} Another sentence.")
    assert wrong["medec_error_flag_accuracy"] == 1 and wrong["medec_error_sentence_accuracy_fixed"] == 0


def test_medec_correct_texts_scored_as_helm(medec_test):
    correct = next(i for i in medec_test if i.references[0].output.text == "CORRECT")
    assert _scores(FixedMedecMetric(), correct, "CORRECT") == {
        "medec_error_flag_accuracy": 1,
        "medec_error_sentence_accuracy": 1,
        "medec_error_sentence_accuracy_fixed": 1,
    }
    assert _scores(FixedMedecMetric(), correct, "3 something")["medec_error_sentence_accuracy_fixed"] == 0
