"""The optimization methods ``--optimizer`` names: DSPy's optimizers and the zero-shot baselines.

One class per method, ``compile()`` as the single entry (DSPy's teleprompt style); each also says how
many program runs it will make (``estimate_runs``), which ``--dry-run`` prints. The estimates are upper
bounds from each optimizer's budget formula (DSPy 3.4.1 source; see docs of each class).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import dspy

from helm_dspy.errors import UserError


@dataclass
class MethodSettings:
    """Every knob a method reads; all of them go into the manifest."""

    auto: str = "light"
    max_bootstrapped_demos: int = 3
    max_labeled_demos: int = 3
    num_candidates: int | None = None
    num_threads: int = 4
    seed: int = 0
    bsize: int = 32
    max_steps: int = 8
    num_trials: int | None = None
    """MIPROv2 with auto="none": number of Optuna trials (num_candidates gives the candidate count)."""

    def as_dict(self) -> dict:
        return asdict(self)


AUTO_SIZES = {"light": (6, 100), "medium": (12, 300), "heavy": (18, 1000)}
"""MIPROv2's AUTO_RUN_SETTINGS: number of candidates n and the valset cap."""
GEPA_AUTO_N = {"light": 6, "medium": 12, "heavy": 18}


class Method:
    name: str
    program_shape = "cot"
    uses_prompt_model = False

    def __init__(self, settings: MethodSettings):
        self.settings = settings

    def compile(self, program, trainset, valset, metric, prompt_lm=None) -> dspy.Module:
        raise NotImplementedError

    def estimate_runs(self, train_size: int, val_size: int) -> int:
        """Upper bound on task-model program runs (one LM call each for Predict and ChainOfThought)."""
        raise NotImplementedError

    def estimate_prompt_model_calls(self, train_size: int) -> int:
        return 0


class ZeroShot(Method):
    """The paper's zero-shot baselines: the program as is, no optimization (``zeroshot-predict/-cot``)."""

    def __init__(self, settings: MethodSettings, shape: str):
        super().__init__(settings)
        self.program_shape = shape
        self.name = f"zeroshot-{shape}"

    def compile(self, program, trainset, valset, metric, prompt_lm=None):
        return program

    def estimate_runs(self, train_size, val_size):
        return 0


class BootstrapFewShotWithRandomSearch(Method):
    """(N+3) candidates each scored on the whole valset; bootstraps run the teacher over train (<= (N+1)·T)."""

    name = "BootstrapFewShotWithRandomSearch"
    DEFAULT_CANDIDATES = 16  # the seed project's num_candidate_programs

    @property
    def candidates(self) -> int:
        return self.settings.num_candidates or self.DEFAULT_CANDIDATES

    def compile(self, program, trainset, valset, metric, prompt_lm=None):
        optimizer = dspy.BootstrapFewShotWithRandomSearch(
            metric=metric,
            max_bootstrapped_demos=self.settings.max_bootstrapped_demos,
            max_labeled_demos=self.settings.max_labeled_demos,
            num_candidate_programs=self.candidates,
            num_threads=self.settings.num_threads,
            max_errors=10**9,
        )
        return optimizer.compile(program, trainset=trainset, valset=valset)

    def estimate_runs(self, train_size, val_size):
        return (self.candidates + 3) * val_size + (self.candidates + 1) * train_size


class MIPROv2(Method):
    """Instruction + demo search with Optuna (``auto=light``: 6 candidates, 10 trials, valset <= 100)."""

    name = "MIPROv2"
    uses_prompt_model = True

    def _n_and_trials(self, val_size: int) -> tuple[int, int, int]:
        if self.settings.auto == "none":
            return self.settings.num_candidates or 3, self.settings.num_trials or 3, val_size
        n, cap = AUTO_SIZES[self.settings.auto]
        few_shot = self.settings.max_bootstrapped_demos or self.settings.max_labeled_demos
        trials = int(max(2 * (2 if few_shot else 1) * math.log2(n), 1.5 * n))
        return n, trials, min(val_size, cap)

    def compile(self, program, trainset, valset, metric, prompt_lm=None):
        seed = self.settings.seed
        manual = self.settings.auto == "none"
        n, trials, _ = self._n_and_trials(len(valset))
        optimizer = dspy.MIPROv2(
            metric=metric,
            prompt_model=prompt_lm,
            max_bootstrapped_demos=self.settings.max_bootstrapped_demos,
            max_labeled_demos=self.settings.max_labeled_demos,
            auto=None if manual else self.settings.auto,
            num_candidates=n if manual else None,
            num_threads=self.settings.num_threads,
            max_errors=10**9,
            seed=seed,  # set here too: DSPy 3.4.1's compile() does `seed or self.seed`, so seed=0 became 9
        )
        return optimizer.compile(
            program,
            trainset=trainset,
            valset=valset,
            seed=seed,
            num_trials=trials if manual else None,
            minibatch=len(valset) > 50,
            minibatch_size=min(35, len(valset)),
        )

    def estimate_runs(self, train_size, val_size):
        n, trials, v = self._n_and_trials(val_size)
        if v > 50:  # MIPROv2 minibatches only above 50 valset examples
            evaluation = v + trials * min(35, v) + math.ceil(trials / 5) * v
        else:
            evaluation = v * (1 + trials)
        return evaluation + n * train_size  # + bootstrapping: n demo sets, each <= one pass over train

    def estimate_prompt_model_calls(self, train_size):
        n, _, _ = self._n_and_trials(1)
        return math.ceil(train_size / 10) + 1 + 3 * n  # data summary + (program, module, instruction) per candidate


class GEPA(Method):
    """Reflective instruction evolution; the prompt model reflects on HELM-metric feedback."""

    name = "GEPA"
    uses_prompt_model = True

    def compile(self, program, trainset, valset, metric, prompt_lm=None):
        optimizer = dspy.GEPA(
            metric=metric,
            auto=self.settings.auto,
            reflection_lm=prompt_lm,
            num_threads=self.settings.num_threads,
            seed=self.settings.seed,
        )
        return optimizer.compile(program, trainset=trainset, valset=valset)

    def estimate_runs(self, train_size, val_size):
        n = GEPA_AUTO_N[self.settings.auto]
        trials = int(max(4 * math.log2(n), 1.5 * n))
        return val_size + 5 * n + 35 * trials + ((trials + 1) // 5 + 1 + int(trials < 5)) * val_size + 3

    def estimate_prompt_model_calls(self, train_size):
        n = GEPA_AUTO_N[self.settings.auto]
        return 35 * int(max(4 * math.log2(n), 1.5 * n)) // 3 + 1  # at most one reflection per minibatch of 3


class SIMBA(Method):
    """Stochastic mini-batch ascent: demos and self-written rules; no valset (scores on train)."""

    name = "SIMBA"
    uses_prompt_model = True

    def _shape(self, train_size: int) -> tuple[int, int]:
        candidates = self.settings.num_candidates or 6
        return min(self.settings.bsize, train_size), candidates

    def compile(self, program, trainset, valset, metric, prompt_lm=None):
        bsize, candidates = self._shape(len(trainset))
        optimizer = dspy.SIMBA(
            metric=metric,
            bsize=bsize,
            num_candidates=candidates,
            max_steps=self.settings.max_steps,
            max_demos=self.settings.max_bootstrapped_demos,
            prompt_model=prompt_lm,
            num_threads=self.settings.num_threads,
        )
        return optimizer.compile(program, trainset=trainset, seed=self.settings.seed)

    def estimate_runs(self, train_size, val_size):
        bsize, candidates = self._shape(train_size)
        built = min(bsize, candidates + 1)
        final = min(candidates + 1, self.settings.max_steps + 1)
        return self.settings.max_steps * bsize * (candidates + built) + final * train_size

    def estimate_prompt_model_calls(self, train_size):
        bsize, candidates = self._shape(train_size)
        return self.settings.max_steps * min(bsize, candidates + 1)


METHOD_NAMES = (
    "MIPROv2",
    "BootstrapFewShotWithRandomSearch",
    "GEPA",
    "SIMBA",
    "zeroshot-predict",
    "zeroshot-cot",
)


def get_method(name: str, settings: MethodSettings) -> Method:
    classes = {cls.name: cls for cls in (MIPROv2, BootstrapFewShotWithRandomSearch, GEPA, SIMBA)}
    if name in classes:
        return classes[name](settings)
    if name in ("zeroshot-predict", "zeroshot-cot"):
        return ZeroShot(settings, name.split("-", 1)[1])
    raise UserError(f"unknown optimizer {name!r}; choose from {', '.join(METHOD_NAMES)}")
