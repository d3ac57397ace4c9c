"""The upstream files HELM 0.5.16 evaluates (and the optional ones we optimize on), as we know them.

A mirror file is trusted only when its sha256 is the upstream one: a file cut in half or edited by hand
would otherwise be evaluated silently. Hashes are of the upstream git blobs' bytes (see the mirror's
PROVENANCE.txt for the commits); ``rows`` is what a reader counts (CSV records, exam questions, demos),
so a mismatch can say how far off a file is, not only that it differs.
"""

from __future__ import annotations

from dataclasses import dataclass

HELM_VERSION = "0.5.16"


@dataclass(frozen=True)
class KnownFile:
    """One upstream file: its bytes' sha256 and size, and the count a reader finds in it."""

    sha256: str
    size: int
    rows: int
    unit: str
    """What ``rows`` counts, for messages: "rows", "CSV records", "questions", "calculators"."""
    evaluated: bool = False
    """True for the test files: HELM 0.5.16 evaluates exactly this file."""
    note: str = ""
    """How the count relates to HELM's instances, when it differs (e.g. empty records skipped)."""


KNOWN_FILES: dict[tuple[str, str], KnownFile] = {
    # MedCalc-Bench v1.0, github.com/ncbi-nlp/MedCalc-Bench @ version-1.0 (blob 8206aa66500f, bd23719df132).
    ("medcalc_bench", "test_data.csv"): KnownFile(
        "c2d23097f8bdb7ae4a77dbf4a5a767335df7303998d7c7664a73a29fd8e2b31a", 4_001_702, 1047, "rows", True
    ),
    ("medcalc_bench", "one_shot_finalized_explanation.json"): KnownFile(
        "f4b32fdccf6f8ec4c1e97e207a5f60da1fb4bacae3a8439668926453fda578ac", 232_636, 55, "calculators"
    ),
    # MEDEC-MS, github.com/abachaa/MEDEC @ 49c59dc, the commit HELM pins (blobs b2cb1fbf137f, 8bddb55ca19e).
    ("medec", "MEDEC-MS-TestSet-with-GroundTruth-and-ErrorType.csv"): KnownFile(
        "f35e2c3c1e4d98ca900394c4fcff14c2a84752e48ddc83698401da6a360c707e",
        1_298_473,
        925,
        "CSV records",
        True,
        "597 test texts; HELM skips the 328 empty records",
    ),
    ("medec", "MEDEC-MS-ValidationSet-with-GroundTruth-and-ErrorType.csv"): KnownFile(
        "7571aec311e2fb88d9084082af2323aa579d102e1d5e1a06faf930fe4fd3977d", 1_221_588, 574, "CSV records"
    ),
    # HEAD-QA English v1.0 (HEAD_EN.zip members; blobs f978513a4e1e, db0e65459e59, c401cdf8b99c).
    ("head_qa", "HEAD_EN/train_HEAD_EN.json"): KnownFile(
        "0b9f0e708d6d0dc7a85db19dcb72ece76f61253229eb7bad218ec34f7a215fd1", 1_373_763, 2657, "questions"
    ),
    ("head_qa", "HEAD_EN/dev_HEAD_EN.json"): KnownFile(
        "4c1b0588d1e1c4c769accdb6cfa6b4fe85cb032baffa9bc6520a454e7cc9f7f8", 628_975, 1366, "questions"
    ),
    ("head_qa", "HEAD_EN/test_HEAD_EN.json"): KnownFile(
        "41f9f178b5d363ecd665f56ecca42deff7834c66f491617cc2687bbcfccd03b7",
        1_309_602,
        2742,
        "questions",
        True,
        "2,675 without an image",
    ),
    # Medbullets, github.com/HanjieChen/ChallengeClinicalQA @ ef3c9da (blob 4a7d0dd260b4).
    ("medbullets", "medbullets_op5.csv"): KnownFile(
        "7da4b1397418b4bd15074066ea6a377ac44a599794a959cd8ebc76937ea597e6", 1_217_131, 308, "rows", True
    ),
}

UNVERIFIED_FILES: frozenset[tuple[str, str]] = frozenset(
    {
        ("medcalc_bench", "train_data.csv"),
        ("medcalc_bench", "train_data.csv.zip"),
        ("medec", "MEDEC-Full-TrainingSet-with-ErrorType.csv"),
    }
)
"""Optional train files (> 4 MiB, absent from the reference snapshot): no upstream sha256 is known, so
they are checked for encoding and columns only, their hash is recorded, and ``data check`` says so."""
