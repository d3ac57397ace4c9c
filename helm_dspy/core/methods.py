"""The method registry: every way of producing an agent, and everything either direction needs to know of it.

One class per method (DSPy's teleprompt style): its name (``--optimizer`` and ``dspy=`` value), slug (in
derived model names), display name (leaderboard rows), program shape, whether it uses a prompt model, its
budget formula (``estimate_runs``, an upper bound from DSPy 3.4.1's source, which ``--dry-run`` prints) and
``compile()``. Optimizing and evaluating both read methods from here and nowhere else.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from helm_dspy.core.options import option
from helm_dspy.errors import UserError

if TYPE_CHECKING:
    import dspy


@dataclass
class MethodSettings:
    """Every knob a method reads; all of them go into the manifest, and each is a ``helm-dspy optimize`` flag."""

    auto: str = option(
        "light",
        "MIPROv2/GEPA budget; MIPROv2 with none uses --num-candidates and --num-trials",
        choices=("light", "medium", "heavy", "none"),
    )
    max_bootstrapped_demos: int = option(3, "bootstrapped demos per program", minimum=0)
    max_labeled_demos: int = option(3, "labeled demos per program", minimum=0)
    num_candidates: int | None = option(
        None,
        "BFRS random candidates (default 16; 0 keeps its zero-shot and unshuffled-bootstrap candidates) / SIMBA "
        "candidates (default 6) / MIPROv2 with --auto none",
        minimum=0,
    )
    num_threads: int = option(4, "parallel model calls", minimum=1)
    seed: int = option(0, "seed for sampling and optimizer randomness")
    bsize: int = option(32, "SIMBA mini-batch size (capped at the train size)", minimum=1)
    max_steps: int = option(8, "SIMBA steps", minimum=1)
    num_trials: int | None = option(None, "MIPROv2 trials with --auto none (default 3)", minimum=1)

    def as_dict(self) -> dict:
        return asdict(self)


AUTO_SIZES = {"light": (6, 100), "medium": (12, 300), "heavy": (18, 1000)}
"""MIPROv2's AUTO_RUN_SETTINGS: number of candidates n and the valset cap."""
GEPA_AUTO_N = {"light": 6, "medium": 12, "heavy": 18}


class Method:
    name: str
    """The ``--optimizer`` and ``dspy=`` value."""
    slug: str
    """Short form in derived model names: ``<model>-helmdspy-<slug>``."""
    display_name: str
    """How leaderboard rows, reports and plots name it."""
    program_shape: str | None = None
    """A fixed program shape (the zero-shot methods), or None: the user's choice, ChainOfThought by default."""
    uses_prompt_model = False
    """Whether ``--prompt-model`` is used (instruction proposals, reflection, rules)."""
    zero_shot = False
    """The program as is, no optimization: needs no agent file and no model calls to build."""
    allows_no_candidates = False
    """Whether ``num_candidates`` may be 0 (BFRS: it still compares zero-shot with one bootstrapped program)."""

    def __init__(self, settings: MethodSettings | None = None):
        self.settings = settings or MethodSettings()

    def check(self) -> None:
        """A UserError for settings this method cannot run with (before anything is spent)."""
        if self.settings.num_candidates == 0 and not self.allows_no_candidates:
            raise UserError(
                f"{self.name} needs --num-candidates of at least 1 (0 is for BootstrapFewShotWithRandomSearch only)"
            )

    def compile(self, program, trainset, valset, metric, prompt_lm=None) -> dspy.Module:
        raise NotImplementedError

    def estimate_runs(self, train_size: int, val_size: int) -> int:
        """Upper bound on the task-model calls ``compile()`` makes (one per program run: Predict and
        ChainOfThought make one LM call each), from DSPy 3.4.1's source. An answer ChatAdapter cannot parse
        costs one more call (DSPy retries it with JSONAdapter); the bounds assume answers parse."""
        raise NotImplementedError

    def estimate_prompt_model_calls(self, train_size: int, val_size: int | None = None) -> int:
        """Upper bound on ``--prompt-model`` calls (instruction proposals, reflections, rules)."""
        return 0


class ZeroShot(Method):
    """The paper's zero-shot baselines: the program as is, no optimization."""

    zero_shot = True

    def compile(self, program, trainset, valset, metric, prompt_lm=None):
        return program

    def estimate_runs(self, train_size, val_size):
        return 0


class ZeroShotPredict(ZeroShot):
    name = "zeroshot-predict"
    slug = "zs-predict"
    display_name = "DSPy zero-shot Predict"
    program_shape = "predict"


class ZeroShotCoT(ZeroShot):
    name = "zeroshot-cot"
    slug = "zs-cot"
    display_name = "DSPy zero-shot CoT"
    program_shape = "cot"


class BootstrapFewShotWithRandomSearch(Method):
    """(N+3) candidates each scored on the whole valset (zero-shot, labeled-only, unshuffled bootstrap, N random
    bootstraps); bootstraps run the teacher over train (<= (N+1)·T)."""

    name = "BootstrapFewShotWithRandomSearch"
    slug = "bfrs"
    display_name = "DSPy BootstrapFewShot+RandomSearch"
    DEFAULT_CANDIDATES = 16  # the seed project's num_candidate_programs
    allows_no_candidates = True

    @property
    def candidates(self) -> int:
        count = self.settings.num_candidates
        return self.DEFAULT_CANDIDATES if count is None else count

    def compile(self, program, trainset, valset, metric, prompt_lm=None):
        import dspy  # here, not at import: the registry is read by helm-run's plugin import

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
        # seeds -3..N-1 each score the valset; seed -1 and 0..N-1 bootstrap: <= one teacher run per train example
        bootstraps = self.candidates + 1 if self.settings.max_bootstrapped_demos else 0
        return (self.candidates + 3) * val_size + bootstraps * train_size


class MIPROv2(Method):
    """Instruction + demo search with Optuna (``auto=light``: 6 candidates, 10 trials, valset <= 100)."""

    name = "MIPROv2"
    slug = "miprov2"
    display_name = "DSPy MIPROv2"
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
        import dspy  # here, not at import: the registry is read by helm-run's plugin import

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

    def _instruction_candidates(self) -> int:
        n, _, _ = self._n_and_trials(1)
        if self.settings.auto == "none":
            return n
        few_shot = self.settings.max_bootstrapped_demos or self.settings.max_labeled_demos
        return int(n * 0.5) if few_shot else n  # MIPROv2 halves the instructions when demos are searched too

    def estimate_runs(self, train_size, val_size):
        n, trials, v = self._n_and_trials(val_size)
        if v > 50:  # MIPROv2 minibatches only above 50 valset examples
            # a full valset pass after every 5 minibatch trials and one at the end (DSPy's adjusted_num_trials)
            fulls = math.ceil(trials / 5)
            evaluation = v + trials * min(35, v) + fulls * v
        else:
            evaluation = v * (1 + trials)
        # demo sets: seeds -3..n-4; seed -1 and the shuffled seeds bootstrap (seed -2 too without labeled demos),
        # each <= one teacher run per train example; none when only labeled demos are asked for
        labeled = self.settings.max_labeled_demos
        zero_shot = not self.settings.max_bootstrapped_demos and not labeled
        if self.settings.max_bootstrapped_demos or zero_shot:
            bootstraps = max(0, n - 2 + int(not labeled))
        else:
            bootstraps = 0
        return evaluation + bootstraps * train_size

    def estimate_prompt_model_calls(self, train_size, val_size=None):
        n, _, _ = self._n_and_trials(1)
        # data summary: first batch of 10, <= 9 more batches, the summary; then per instruction candidate (at most
        # one per demo set) describe program + describe module + propose
        summary = 2 + min(max(math.ceil(train_size / 10) - 1, 0), 9)
        return summary + 3 * min(self._instruction_candidates(), n)


class GEPA(Method):
    """Reflective instruction evolution; the prompt model reflects on HELM-metric feedback."""

    name = "GEPA"
    slug = "gepa"
    display_name = "DSPy GEPA"
    uses_prompt_model = True

    def check(self) -> None:
        super().check()
        if self.settings.auto not in GEPA_AUTO_N:
            raise UserError("GEPA needs --auto light, medium or heavy")

    def compile(self, program, trainset, valset, metric, prompt_lm=None):
        import dspy  # here, not at import: the registry is read by helm-run's plugin import

        optimizer = dspy.GEPA(
            metric=metric,
            auto=self.settings.auto,
            reflection_lm=prompt_lm,
            num_threads=self.settings.num_threads,
            seed=self.settings.seed,
        )
        return optimizer.compile(program, trainset=trainset, valset=valset)

    REFLECTION_MINIBATCH = 3
    """dspy.GEPA's reflection_minibatch_size."""

    def metric_call_budget(self, val_size: int) -> int:
        """dspy.GEPA.auto_budget(num_preds=1, n, valset_size): GEPA's max_metric_calls (our programs have one
        predictor)."""
        n = GEPA_AUTO_N[self.settings.auto]
        trials = int(max(2 * 2 * math.log2(n), 1.5 * n))
        fulls = (trials + 1) // 5 + 1 + int(trials < 5)
        return val_size + 5 * n + trials * 35 + fulls * val_size

    def estimate_runs(self, train_size, val_size):
        # GEPA checks max_metric_calls only between iterations (the seed's valset pass counts): the last one
        # starts below the budget and adds at most a parent and a child minibatch plus a full valset pass
        # (a merge: 5 + valset), so the program runs <= budget - 1 + valset + 6
        return self.metric_call_budget(val_size) + val_size + 2 * self.REFLECTION_MINIBATCH - 1

    def estimate_prompt_model_calls(self, train_size, val_size=None):
        if val_size is None:
            raise ValueError("GEPA's reflection bound needs the valset size")
        # one reflection per iteration at most; every iteration spends >= one minibatch of metric calls
        minibatch = max(1, min(self.REFLECTION_MINIBATCH, train_size))
        return math.ceil((self.metric_call_budget(val_size) - val_size) / minibatch)


class SIMBA(Method):
    """Stochastic mini-batch ascent: demos and self-written rules; no valset (scores on train)."""

    name = "SIMBA"
    slug = "simba"
    display_name = "DSPy SIMBA"
    uses_prompt_model = True

    def _shape(self, train_size: int) -> tuple[int, int]:
        candidates = self.settings.num_candidates or 6
        return min(self.settings.bsize, train_size), candidates

    def compile(self, program, trainset, valset, metric, prompt_lm=None):
        bsize, candidates = self._shape(len(trainset))
        import dspy  # here, not at import: the registry is read by helm-run's plugin import

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
        built = min(bsize, candidates + 1)  # candidates built per step (one per bucket, at most candidates + 1)
        final = min(candidates + 1, self.settings.max_steps + 1)  # distinct winners scored on all of train
        # per step: bsize x candidates sampled trajectories + each built candidate on the batch
        return self.settings.max_steps * bsize * (candidates + built) + final * train_size

    def estimate_prompt_model_calls(self, train_size, val_size=None):
        bsize, candidates = self._shape(train_size)
        return self.settings.max_steps * min(bsize, candidates + 1)  # <= one rule per candidate built


METHODS: dict[str, type[Method]] = {
    method.name: method
    for method in (MIPROv2, BootstrapFewShotWithRandomSearch, GEPA, SIMBA, ZeroShotPredict, ZeroShotCoT)
}
"""Every method by name, in the order help texts list them."""
METHOD_NAMES = tuple(METHODS)


def method_class(name: str, given_as: str = "optimizer") -> type[Method]:
    """The method called ``name``; a UserError listing the valid names otherwise.

    ``given_as`` says where the name came from: a flag (``optimizer``) or a run entry (``dspy=``).
    """
    if name not in METHODS:
        where = f"{given_as}{name} names no method" if given_as.endswith("=") else f"unknown {given_as} {name!r}"
        raise UserError(f"{where}; choose from {', '.join(METHOD_NAMES)}")
    return METHODS[name]


def get_method(name: str, settings: MethodSettings | None = None) -> Method:
    return method_class(name)(settings)


def method_by_slug(slug: str) -> type[Method] | None:
    return next((method for method in METHODS.values() if method.slug == slug), None)


def program_shape(method: type[Method], requested: str | None) -> str:
    """The program shape an agent of ``method`` has; a UserError when ``requested`` contradicts a fixed one."""
    if method.program_shape is None:
        return requested or "cot"
    if requested and requested != method.program_shape:
        other = next(m.name for m in METHODS.values() if m.zero_shot and m.program_shape == requested)
        raise UserError(
            f"{method.name} is the {method.program_shape!r} program; drop --program {requested} "
            f"or use {other} for the {requested!r} program"
        )
    return method.program_shape
