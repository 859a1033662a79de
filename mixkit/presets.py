"""How a record becomes a document: ``--field``, ``--template``, or a named ``--preset``.

Each preset renders a record as a *prompt* and an *answer*; the document that
``mixkit tokenize`` stores is ``prompt + answer``, and supervised finetuning puts its
loss on the answer tokens only. The templates (``{field}`` is the record's field):

``c4``            ``{text}`` (web text; no prompt)
``gsm8k``         ``Question: {question}\\nAnswer:`` → `` {answer}``
``math``          ``Problem: {problem}\\nSolution:`` → `` {solution}`` (or `` {answer}`` when the
                  record has no worked solution)
``code``          ``{prompt}`` → ``{canonical_solution}`` for HumanEval-style tasks;
                  ``{text}`` (or ``{content}``) for source files
``instructions``  ``{instruction}\\n\\n{input}\\n\\nResponse:`` (input omitted when empty) →
                  `` {output}``; ``{prompt}`` → ``{completion}`` for prompt/completion data
``qa``            ``{support}\\n\\nQuestion: {question}\\nA. …\\nD. …\\nAnswer:`` → `` {answer}``:
                  MMLU (``choices`` + letter ``answer``), SciQ (``correct_answer`` +
                  ``distractor1..3``, shuffled deterministically per question), SQuAD
                  (``context`` + ``answers.text[0]``)

Literal ``<|endoftext|>`` at the end of a completion (as in T0/P3 dumps) is removed:
the store's own EOS marks document ends.
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mixkit.config import invalid
from mixkit.readers import BadRecord, Record

PromptAnswer = tuple[str, str]
_EOT = "<|endoftext|>"


def _get_str(rec: Record, key: str) -> str:
    if key not in rec.fields:
        fields = ", ".join(sorted(rec.fields)) or "none"
        raise BadRecord(rec.origin, "missing field", f"record has no field '{key}' (fields: {fields})")
    value = rec.fields[key]
    if not isinstance(value, str):
        raise BadRecord(rec.origin, "non-string field", f"field '{key}' is {type(value).__name__}, expected a string")
    return value


def _strip_eot(text: str) -> str:
    return text[: -len(_EOT)] if text.endswith(_EOT) else text


def c4(rec: Record) -> PromptAnswer:
    return "", _get_str(rec, "text")


def gsm8k(rec: Record) -> PromptAnswer:
    return f"Question: {_get_str(rec, 'question')}\nAnswer:", " " + _get_str(rec, "answer")


def math(rec: Record) -> PromptAnswer:
    answer = _get_str(rec, "solution") if "solution" in rec.fields else _get_str(rec, "answer")
    return f"Problem: {_get_str(rec, 'problem')}\nSolution:", " " + answer


def code(rec: Record) -> PromptAnswer:
    if "canonical_solution" in rec.fields:
        return _get_str(rec, "prompt"), _get_str(rec, "canonical_solution")
    if "content" in rec.fields and "text" not in rec.fields:
        return "", _get_str(rec, "content")
    return "", _get_str(rec, "text")


def instructions(rec: Record) -> PromptAnswer:
    if "instruction" in rec.fields:
        instruction = _get_str(rec, "instruction")
        inp = _get_str(rec, "input") if "input" in rec.fields else ""
        if "output" not in rec.fields and isinstance(rec.fields.get("instances"), list) and rec.fields["instances"]:
            inst = rec.fields["instances"][0]
            inp, output = str(inst.get("input", "")), str(inst.get("output", ""))
        else:
            output = _get_str(rec, "output")
        prompt = f"{instruction}\n\n{inp}\n\nResponse:" if inp.strip() else f"{instruction}\n\nResponse:"
        return prompt, " " + _strip_eot(output)
    return _get_str(rec, "prompt"), _strip_eot(_get_str(rec, "completion"))


def _letters(n: int) -> str:
    return string.ascii_uppercase[:n]


def qa(rec: Record) -> PromptAnswer:
    question = _get_str(rec, "question")
    f = rec.fields
    if "choices" in f:  # MMLU
        choices = f["choices"]
        if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
            raise BadRecord(rec.origin, "non-string field", "field 'choices' must be a list of strings")
        answer = f.get("answer")
        letters = _letters(len(choices))
        if isinstance(answer, int) and 0 <= answer < len(choices):
            answer = letters[answer]
        if not isinstance(answer, str) or answer not in letters:
            raise BadRecord(rec.origin, "missing field", f"field 'answer' must be one of {', '.join(letters)}")
        lines = "\n".join(f"{letter}. {c}" for letter, c in zip(letters, choices))
        return f"Question: {question}\n{lines}\nAnswer:", f" {answer}. {choices[letters.index(answer)]}"
    if "correct_answer" in f:  # SciQ
        correct = _get_str(rec, "correct_answer")
        options = [correct] + [_get_str(rec, f"distractor{i}") for i in (1, 2, 3) if f"distractor{i}" in f]
        # A deterministic order per question, so the correct answer is not always "A".
        options.sort(key=lambda o: hashlib.sha256((question + "\x00" + o).encode()).hexdigest())
        letters = _letters(len(options))
        lines = "\n".join(f"{letter}. {o}" for letter, o in zip(letters, options))
        support = f.get("support") or ""
        head = f"{support}\n\n" if isinstance(support, str) and support.strip() else ""
        letter = letters[options.index(correct)]
        return f"{head}Question: {question}\n{lines}\nAnswer:", f" {letter}. {correct}"
    if "context" in f:  # SQuAD
        answers = f.get("answers")
        texts = answers.get("text") if isinstance(answers, dict) else None
        if not texts or not isinstance(texts[0], str):
            raise BadRecord(rec.origin, "missing field", "SQuAD record has no answers.text")
        return f"{_get_str(rec, 'context')}\n\nQuestion: {question}\nAnswer:", " " + texts[0]
    return f"Question: {question}\nAnswer:", " " + _get_str(rec, "answer")


PRESETS: dict[str, Callable[[Record], PromptAnswer]] = {
    "c4": c4,
    "gsm8k": gsm8k,
    "math": math,
    "code": code,
    "instructions": instructions,
    "qa": qa,
}
PRESET_NAMES = tuple(PRESETS)  # the choices of --preset


@dataclass(frozen=True)
class TextSpec:
    """Which text a record contributes: at most one of a field, a template or a preset
    (none: the field ``text``). A config (``mixkit.config``): its checks raise ``invalid``."""

    field: str | None = None
    template: str | None = None
    preset: str | None = None

    def __post_init__(self) -> None:
        given = [k for k in ("field", "template", "preset") if getattr(self, k) is not None]
        if len(given) > 1:
            raise invalid(given[-1], "give only one of field, template, preset")
        if self.preset is not None and self.preset not in PRESETS:
            raise invalid("preset", f"unknown preset {self.preset!r} (known: {', '.join(PRESETS)})")
        if self.template is not None:
            try:
                names = [f for _, f, _, _ in string.Formatter().parse(self.template) if f]
            except ValueError as e:
                raise invalid("template", f"{self.template!r} is not a valid format string ({e})") from None
            if not names:
                raise invalid("template", f"{self.template!r} names no field")

    def describe(self) -> dict[str, Any]:
        if self.preset:
            return {"preset": self.preset}
        if self.template:
            return {"template": self.template}
        return {"field": self.field or "text"}

    def prompt_answer(self, rec: Record) -> PromptAnswer:
        """The record as (prompt, answer); raises ``BadRecord`` for a missing or non-string field."""
        if self.preset:
            return PRESETS[self.preset](rec)
        if self.template:
            return "", render_template(self.template, rec)
        return "", _get_str(rec, self.field or "text")

    def text(self, rec: Record) -> str:
        prompt, answer = self.prompt_answer(rec)
        return prompt + answer


def render_template(template: str, rec: Record) -> str:
    """``template.format`` over the record's string fields; a missing or non-string field is a ``BadRecord``."""
    values = {}
    for _, name, _, _ in string.Formatter().parse(template):
        if name and name not in values:
            values[name] = _get_str(rec, name)
    return template.format_map(values)
