"""The DSPy program shape shared with the seed project and HELM's DSPyClient, saved as JSON state."""

from __future__ import annotations

import json
import os
from pathlib import Path

import dspy

from helm_dspy.errors import UserError

SIGNATURE = "inputs -> output"
PROGRAM_SHAPES = ("cot", "predict")


def build_program(shape: str = "cot") -> dspy.Module:
    """``dspy.ChainOfThought("inputs -> output")`` (default) or ``dspy.Predict`` of the same signature."""
    if shape == "cot":
        return dspy.ChainOfThought(SIGNATURE)
    if shape == "predict":
        return dspy.Predict(SIGNATURE)
    raise UserError(f"unknown program shape {shape!r}; choose from {', '.join(PROGRAM_SHAPES)}")


def shape_of_state(state: dict) -> str:
    """Which shape saved this state: ChainOfThought saves under ``predict`` with a reasoning field."""
    if "predict" in state and isinstance(state["predict"], dict):
        return "cot"
    if "signature" in state and "demos" in state:
        return "predict"
    raise UserError("agent JSON holds neither a ChainOfThought nor a Predict state (no 'predict' or 'demos' key)")


FIELD_NAMES = {"predict": ["inputs", "output"], "cot": ["inputs", "reasoning", "output"]}
"""Field names (from their saved prefixes, e.g. "Inputs:") of ``inputs -> output`` in each shape."""


def check_signature(state: dict, shape: str, path: Path) -> None:
    """Refuse an agent saved for another signature: DSPy's load_state would zip its fields onto ours silently."""
    signature = (state["predict"] if shape == "cot" else state).get("signature") or {}
    fields = signature.get("fields")
    if fields is None:
        return  # no saved fields: instructions and demos only
    names = [str(field.get("prefix", "")).split(":")[0].strip().lower() for field in fields]
    if names != FIELD_NAMES[shape]:
        raise UserError(
            f"agent {path} was saved for fields {names}, not {FIELD_NAMES[shape]} ({SIGNATURE!r}); "
            "optimize an agent for this program with helm-dspy optimize"
        )


def load_program(path: str | os.PathLike, shape: str | None = None) -> dspy.Module:
    """Load an agent saved as DSPy JSON state (never a pickle) into a fresh program of its shape."""
    path = Path(path)
    if path.suffix != ".json":
        raise UserError(f"agent {path} is not a .json state file; pickled programs are never loaded")
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:  # e.g. a pickle (save_program=True) saved under .json: never unpickled
        raise UserError(
            f"agent {path} is not a UTF-8 JSON state file (pickled programs are never loaded); "
            "save the agent with program.save('<name>.json') or create it with helm-dspy optimize"
        ) from None
    except (OSError, json.JSONDecodeError) as error:
        raise UserError(f"agent {path} is not readable JSON ({error})") from None
    detected = shape_of_state(state)
    if shape is not None and shape != detected:
        raise UserError(f"agent {path} was saved for program shape {detected!r}, not {shape!r}")
    check_signature(state, detected, path)
    program = build_program(detected)
    try:
        program.load_state(state)
    except Exception as error:  # DSPy raises KeyError/ValueError/TypeError on foreign shapes
        raise UserError(f"agent {path} does not fit a {detected} program ({type(error).__name__}: {error})") from None
    return program


def describe_program(program: dspy.Module) -> dict:
    """What an optimizer changed: demos kept and whether the instruction differs from DSPy's default.

    Optimize writes it into the manifest and DSPyAgentClient reports it per request, so the report can tell
    an agent that is still the zero-shot program from one an optimizer changed.
    """
    predictor = program.predictors()[0]
    default = build_program("predict").signature.instructions
    return {"demos": len(predictor.demos), "instructions_changed": predictor.signature.instructions != default}


def program_state(program: dspy.Module) -> dict:
    """The plain-JSON state DSPy saves (instructions, demos), as ``program.save('x.json')`` writes it."""
    return program.dump_state()
