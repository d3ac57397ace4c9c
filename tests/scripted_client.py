"""A deterministic, offline HELM client that plays a model speaking DSPy's ChatAdapter format (test double).

It reads the output fields from DSPy's system message ("Your output fields are: 1. `reasoning` (str): ...") and
answers every one of them as ``[[ ## field ## ]]\\nvalue`` blocks followed by ``[[ ## completed ## ]]``:

* ``output``: the gold answer from ``answers_path`` (JSON: whitespace-collapsed text of the ``inputs`` field of the
  last user message -> gold string), or ``"UNKNOWN"`` when the inputs are not in the file. In mode ``"oracle"`` the
  gold is given only when the prompt *has help*: a demo (an assistant turn before the last user message) or
  instructions containing ``MAGIC``; otherwise the answer is ``"WRONG"``, except that a sampled rollout
  (``temperature > 0`` with ``Request.random`` set, as optimizers send) is right by luck for about half of the
  (random, inputs) pairs, so optimizers that compare rollouts (SIMBA) see a difference to learn from.
  Mode ``"always_right"`` always gives the gold, and mode ``"garbage"`` answers plain text without any field
  markers, so DSPy cannot parse it.
* ``reasoning``: ``"Scripted reasoning."``.
* any other field (optimizer-internal signatures: MIPROv2's proposer, SIMBA's advice, ...): an instruction that
  contains ``MAGIC``, or a JSON value of the declared type (``list[str]``, ``int``, ``dict[str, str]``, ``bool`` ...).

GEPA's reflection prompt is plain text with no fields; it gets the MAGIC instruction inside a ``` block. Any other
prompt without DSPy fields is looked up whole. DSPy's JSONAdapter prompts get a JSON object instead of field blocks.

Requests go through HELM's request cache like every ``CachingClient``, and the text depends only on the request, the
mode and the answers file, so an identical rerun is answered from the cache.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import threading
from typing import Any

from helm.clients.client import CachingClient
from helm.common.cache import CacheConfig
from helm.common.request import GeneratedOutput, Request, RequestResult, Token, wrap_request_time
from helm.proxy.retry import NonRetriableException

MODES = ("oracle", "always_right", "garbage")
WRONG = "WRONG"
UNKNOWN = "UNKNOWN"
REASONING = "Scripted reasoning."
GARBAGE = "I cannot answer."
MAGIC_INSTRUCTION = "Think step by step and answer with the final value only. MAGIC"
MAGIC_WORD = "MAGIC"

INPUT_FIELDS_HEADER = "Your input fields are:"
OUTPUT_FIELDS_HEADER = "Your output fields are:"
STRUCTURE_HEADER = "All interactions will be structured"
OBJECTIVE_HEADER = "your objective is:"
JSON_ADAPTER_MARKER = "Outputs will be a JSON object"
COMPLETED = "[[ ## completed ## ]]"
FIELD_LINE = re.compile(r"^\d+\. `([^`]+)` \((.*?)\):", re.MULTILINE)
FIELD_VALUE_END = re.compile(r"\n\s*\n(?=\[\[ ## |Respond with )")
CODE_BLOCK_REQUEST = re.compile(r"within ```", re.IGNORECASE)


def collapse(text: str) -> str:
    return " ".join(text.split())


def parse_fields(text: str, header: str, end: str) -> list[tuple[str, str]]:
    """(name, type) pairs listed under ``header`` (DSPy's field description block), up to ``end``."""
    start = text.find(header)
    if start < 0:
        return []
    block = text[start + len(header) :]
    stop = block.find(end)
    return FIELD_LINE.findall(block if stop < 0 else block[:stop])


def field_value(message: str, name: str) -> str | None:
    """The value of ``[[ ## name ## ]]`` in a user message, up to the next field marker or DSPy's closing line."""
    marker = f"[[ ## {name} ## ]]"
    start = message.rfind(marker)
    if start < 0:
        return None
    rest = message[start + len(marker) :]
    end = FIELD_VALUE_END.search(rest)
    return (rest[: end.start()] if end else rest).strip()


class Conversation:
    """The parts of a request the script looks at: system text, the last user message, and whether demos precede it."""

    def __init__(self, request: Request):
        self.rollout = request.random if request.random is not None and request.temperature > 0 else None
        messages = [dict(m) for m in request.messages or []]
        system = "\n\n".join(m.get("content") or "" for m in messages if m.get("role") == "system")
        turns = [m for m in messages if m.get("role") != "system"]
        last_user = max((i for i, m in enumerate(turns) if m.get("role") == "user"), default=len(turns) - 1)
        self.has_demo = any(m.get("role") == "assistant" for m in turns[:last_user])
        if system:
            self.system = system
            self.last_user = (turns[last_user].get("content") or "") if turns else ""
            self.whole = "\n\n".join(m.get("content") or "" for m in messages)
        elif messages:  # no system message: read the DSPy fields from the text, else use the last user turn
            self._split_prompt("\n\n".join(m.get("content") or "" for m in turns))
            if not self.system and turns:
                self.last_user = turns[last_user].get("content") or ""
        else:
            self.has_demo = False
            self._split_prompt(request.prompt or "")

    def _split_prompt(self, text: str) -> None:
        """A flattened prompt: the system part runs to the end of DSPy's instructions, then the turns follow."""
        self.whole = text
        objective = text.find(OBJECTIVE_HEADER)
        if text.find(OUTPUT_FIELDS_HEADER) < 0 or objective < 0:
            self.system, self.last_user = "", text
            return
        body_start = text.find("[[ ## ", objective)
        body_start = len(text) if body_start < 0 else body_start
        self.system, body = text[:body_start], text[body_start:]
        inputs = parse_fields(self.system, INPUT_FIELDS_HEADER, OUTPUT_FIELDS_HEADER)
        first_input = f"[[ ## {inputs[0][0]} ## ]]" if inputs else "[[ ## "
        last_user = max(body.rfind(first_input), 0)
        self.last_user = body[last_user:]
        self.has_demo = self.has_demo or COMPLETED in body[:last_user]

    @property
    def has_help(self) -> bool:
        return self.has_demo or MAGIC_WORD in self.system

    def lucky(self, key: str) -> bool:
        """A sampled rollout guesses right for about half of the (random, inputs) pairs, deterministically."""
        if self.rollout is None:
            return False
        return hashlib.sha256(f"{self.rollout}\n{key}".encode()).digest()[0] % 2 == 0


class ScriptedClient(CachingClient):
    """HELM client whose "model" answers DSPy prompts from a gold file (see the module docstring)."""

    def __init__(self, cache_config: CacheConfig, answers_path: str, mode: str = "oracle"):
        super().__init__(cache_config=cache_config)
        if mode not in MODES:
            raise ValueError(f"ScriptedClient mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.answers_path = answers_path
        self.mode = mode
        self._answers: dict[str, str] = {}
        self._answers_stamp: tuple[int, int] | None = None
        self._lock = threading.Lock()

    def make_request(self, request: Request) -> RequestResult:
        raw_request: dict[str, Any] = {
            "model": request.model,
            "mode": self.mode,
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
            "stop_sequences": list(request.stop_sequences),
            "num_completions": request.num_completions,
        }
        if request.messages:
            raw_request["messages"] = [dict(m) for m in request.messages]
        else:
            raw_request["prompt"] = request.prompt

        def do_it() -> dict[str, Any]:
            return {"completions": [self.respond(request)] * max(request.num_completions, 1)}

        cache_key = CachingClient.make_cache_key(raw_request, request)
        response, cached = self.cache.get(cache_key, wrap_request_time(do_it))
        completions = [
            GeneratedOutput(text=text, logprob=0.0, tokens=[Token(text=t, logprob=0.0) for t in text.split()])
            for text in response["completions"]
        ]
        return RequestResult(
            success=True,
            cached=cached,
            request_time=response["request_time"],
            request_datetime=response.get("request_datetime"),
            completions=completions,
            embedding=[],
        )

    # --- the script -------------------------------------------------------------------------------------------

    def respond(self, request: Request) -> str:
        """The completion text for ``request`` (a pure function of the request, the mode and the answers)."""
        if self.mode == "garbage":
            return GARBAGE
        conversation = Conversation(request)
        fields = parse_fields(conversation.system, OUTPUT_FIELDS_HEADER, STRUCTURE_HEADER)
        if not fields:
            if CODE_BLOCK_REQUEST.search(conversation.whole):  # GEPA's reflection prompt asks for a ``` block
                return f"```\n{MAGIC_INSTRUCTION}\n```"
            return self.task_answer(collapse(conversation.last_user), conversation)
        values = {name: self.field_value(name, type_, conversation) for name, type_ in fields}
        if JSON_ADAPTER_MARKER in conversation.system:
            return json.dumps(values)
        blocks = [f"[[ ## {name} ## ]]\n{render(value)}\n\n" for name, value in values.items()]
        return "".join(blocks) + COMPLETED

    def field_value(self, name: str, type_: str, conversation: Conversation) -> Any:
        if name == "output":
            key = field_value(conversation.last_user, "inputs")
            return self.task_answer(collapse(conversation.last_user if key is None else key), conversation)
        if name == "reasoning":
            return REASONING
        module_names = field_value(conversation.last_user, "module_names")
        return typed_value(type_, module_names)

    def task_answer(self, key: str, conversation: Conversation) -> str:
        gold = self.answers().get(key)
        if gold is None:
            return UNKNOWN
        if self.mode == "always_right" or conversation.has_help or conversation.lucky(key):
            return gold
        return WRONG

    def answers(self) -> dict[str, str]:
        """The answers file, re-read whenever it changes on disk (tests may fill it after the client exists)."""
        with self._lock:
            try:
                stat = os.stat(self.answers_path)
                stamp = (stat.st_mtime_ns, stat.st_size)
                if stamp != self._answers_stamp:
                    with open(self.answers_path, encoding="utf-8") as handle:
                        answers = json.load(handle)
                    self._answers = {collapse(k): str(v) for k, v in answers.items()}
                    self._answers_stamp = stamp
            except (OSError, ValueError, AttributeError) as error:
                raise NonRetriableException(
                    f"ScriptedClient cannot read answers {self.answers_path}: {error}"
                ) from None
            return self._answers


def render(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def typed_value(type_: str, module_names: str | None = None) -> Any:
    """A value DSPy can parse as ``type_`` (as DSPy prints it, e.g. ``list[str]``); strings carry MAGIC."""
    type_ = type_.strip()
    options = split_top_level(type_, "|")
    if len(options) > 1:  # e.g. "str | None"
        options = [t for t in options if t.lower() not in ("none", "nonetype")] or ["str"]
        return typed_value(options[0], module_names)
    base, _, inner = type_.partition("[")
    inner = inner[:-1] if inner.endswith("]") else inner
    base = base.strip().lower().removeprefix("typing.")
    args = split_top_level(inner, ",") if inner else []
    if base in ("optional", "union"):
        args = [t for t in args if t.lower() not in ("none", "nonetype")] or ["str"]
        return typed_value(args[0], module_names)
    if base == "literal":
        try:
            return ast.literal_eval(f"[{inner}]")[0]
        except (ValueError, SyntaxError, IndexError):
            return MAGIC_INSTRUCTION
    if base in ("list", "tuple", "set", "sequence"):
        return [typed_value(args[0] if args else "str", module_names)]
    if base in ("dict", "mapping"):
        value_type = args[-1] if args else "str"
        return {name: typed_value(value_type) for name in parse_names(module_names)}
    if base == "int":
        return 1
    if base == "float":
        return 1.0
    if base == "bool":
        return True
    if base in ("str", "any"):
        return MAGIC_INSTRUCTION
    return {}


def split_top_level(text: str, separator: str) -> list[str]:
    """Split ``str, list[int]`` on the separators that are not inside brackets."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char == "["
        depth -= char == "]"
        if char == separator and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    return [*parts, current.strip()]


def parse_names(text: str | None) -> list[str]:
    """SIMBA's ``module_names`` input (a JSON list) so its ``module_advice`` dict can name every module."""
    if not text:
        return []
    try:
        names = json.loads(text)
    except ValueError:
        return []
    return [str(n) for n in names] if isinstance(names, list) else []


class KeyedScriptedClient(ScriptedClient):
    """A ScriptedClient that takes an ``api_key``, so HELM hands it the key from credentials.conf."""

    def __init__(self, cache_config: CacheConfig, answers_path: str, api_key: str, mode: str = "oracle"):
        super().__init__(cache_config, answers_path, mode)
        self.api_key = api_key


OUTAGE = "scripted outage: 503 Service Unavailable"


class FailingClient(CachingClient):
    """A deployment whose every call fails (a server that is down), without HELM's retry waits."""

    def __init__(self, cache_config: CacheConfig):
        super().__init__(cache_config=cache_config)

    def make_request(self, request: Request) -> RequestResult:
        raise NonRetriableException(OUTAGE)
