"""HEAD-QA (English) with the upstream train and dev exams as optimization data."""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from pathlib import Path

from helm.benchmark.scenarios import headqa_scenario
from helm.benchmark.scenarios.headqa_scenario import HeadQAScenario
from helm.benchmark.scenarios.scenario import Instance

from helm_dspy.data import mirror
from helm_dspy.data.mirror import SourceFile
from helm_dspy.errors import UserError
from helm_dspy.scenarios.base import OptimizableScenario, download_errors

SCENARIO = "head_qa"
_URL = "https://github.com/aghie/head-qa (HEAD_EN.zip, member HEAD_EN/{}_HEAD_EN.json)"
HF_SPLIT_FILES = {
    "test": SourceFile(SCENARIO, "HEAD_EN/test_HEAD_EN.json", _URL.format("test")),
    "train": SourceFile(SCENARIO, "HEAD_EN/train_HEAD_EN.json", _URL.format("train")),
    "validation": SourceFile(SCENARIO, "HEAD_EN/dev_HEAD_EN.json", _URL.format("dev")),
}
_PATCH_LOCK = threading.Lock()


class HeadQADSPyScenario(OptimizableScenario, HeadQAScenario):
    """HELM's HEAD-QA scenario, fed one upstream split at a time through its own loop."""

    def load_test(self, output_path: str) -> list[Instance]:
        return self._instances("test", output_path)

    def load_train(self, output_path: str) -> list[Instance] | None:
        return self._instances("train", output_path)

    def load_valid(self, output_path: str) -> list[Instance] | None:
        return self._instances("validation", output_path)

    def _instances(self, hf_split: str, output_path: str) -> list[Instance]:
        if self.language != "en" and mirror.data_dir() is not None:
            raise UserError(f"{SCENARIO}: the mirror holds HEAD_EN only, not language={self.language}")
        with _serve_as_test_split(hf_split, self.HUGGING_FACE_DATASET_PATH, self.language):
            return HeadQAScenario.get_instances(self, output_path)


@contextmanager
def _serve_as_test_split(hf_split: str, dataset_path: str, language: str):
    """HELM's loop reads only ``dataset["test"]``; hand it the split we want under that key.

    HELM hard-codes the split ("limit to zero shot setting"), so this is how its row code is reused.
    """
    if mirror.data_dir() is not None:
        rows = hf_rows(mirror.locate(HF_SPLIT_FILES[hf_split]), HF_SPLIT_FILES[hf_split])
    else:
        from datasets import load_dataset

        upstream = f"huggingface.co/datasets/{dataset_path} config {language!r}"
        with download_errors(SCENARIO, upstream, HF_SPLIT_FILES[hf_split].relative_path):
            rows = load_dataset(dataset_path, language)[hf_split]
    with _PATCH_LOCK:  # HELM's module reads its own ``load_dataset`` name: serve it our rows, then restore it
        original = headqa_scenario.load_dataset
        headqa_scenario.load_dataset = lambda *args, **kwargs: {"test": rows}
        try:
            yield
        finally:
            headqa_scenario.load_dataset = original


def hf_rows(path: Path, source: SourceFile) -> list[dict]:
    """Rows shaped like the HF ``dvilares/head_qa`` builder's: int qid/ra, image None when empty."""
    try:
        exams = json.loads(path.read_text(encoding="utf-8"))["exams"]
        rows = []
        for exam in exams.values():
            for question in exam["data"]:
                rows.append(
                    {
                        "name": exam["name"],
                        "year": exam["year"],
                        "category": exam["category"],
                        "qid": int(question["qid"]),
                        "qtext": question["qtext"],
                        "ra": int(question["ra"]),
                        "image": question["image"] or None,
                        "answers": [{"aid": int(a["aid"]), "atext": a["atext"]} for a in question["answers"]],
                    }
                )
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise UserError(
            f"{SCENARIO}: {path} is not a HEAD-QA exam file ({type(error).__name__}: {error}); "
            f"replace it with {source.url}"
        ) from None
    return rows
