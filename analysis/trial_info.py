"""A trial's `params.json` -> the settings the analysis groups by (method, languages, hyper-parameters)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from xlamaml.trainables.assignment import Assignment, flat_trial, parse_assignment
from xlamaml.trainables.errors import InputError
from xlamaml.trainables.languages import MLQA_LANGS, XNLI_LANGS

KNOWN_LANGS: tuple[str, ...] = tuple(dict.fromkeys(XNLI_LANGS + MLQA_LANGS))


@dataclass(frozen=True)
class TrialInfo:
    """What the analysis knows of a trial from its params.json: its cell, languages, sampling and seed."""

    assignment: str
    method: str
    support: str  # '+'-joined, '' for the baseline
    query: str
    aux: str  # Assignment.aux: 'hi' for xla-maml:en>hi, 'bg+de' for x-maml:bg+de, '' for the baseline
    sampling: str | None
    parallel: bool | None
    seed: int | None
    inner_lr: float | None
    outer_lr: float | None
    inner_steps: int | None
    first_order: bool | None
    task: str | None
    model: str | None
    few_shot: bool | None

    def as_dict(self) -> dict[str, Any]:
        """Return the fields as a plain dict (column name -> value)."""
        return asdict(self)


def _assignment(params: dict[str, Any], where: str) -> Assignment:
    """Return the trial's Assignment: its `assignment` string, else its `method` and `meta.*_langs`."""
    text = params.get("assignment")
    if text is not None:
        try:
            return parse_assignment(str(text), KNOWN_LANGS)
        except ValueError as e:
            raise InputError(f"{where}: {e}") from None
    method = params.get("method", "xla-maml")
    meta = params.get("meta") or {}
    if method == "baseline":
        return Assignment("baseline")
    if method == "x-maml":
        # x-maml draws support and query from the same (query) languages.
        return Assignment("x-maml", (), tuple(meta.get("query_langs") or ()))
    return Assignment(str(method), tuple(meta.get("support_langs") or ()), tuple(meta.get("query_langs") or ()))


def trial_info(params: dict[str, Any], where: str) -> TrialInfo:
    """Return the TrialInfo of a trial config (`where` names the file in errors)."""
    params = flat_trial(params)
    a = _assignment(params, where)
    # params.json holds the config before the assignment is applied (x-maml also turns `parallel` off).
    meta = {**(params.get("meta") or {}), **a.overrides().get("meta", {})}
    support = a.query if a.method == "x-maml" else a.support
    # A baseline runs no meta stage: its meta settings are config defaults that mean nothing, and
    # leaving them empty lets every baseline trial of one setting fall into one group.
    meta_value = (lambda key: None) if a.method == "baseline" else meta.get
    return TrialInfo(
        assignment=a.key, method=a.method, support="+".join(support), query="+".join(a.query), aux=a.aux,
        sampling=meta_value("sampling"), parallel=meta_value("parallel"), seed=params.get("seed"),
        inner_lr=meta_value("inner_lr"), outer_lr=meta_value("outer_lr"), inner_steps=meta_value("inner_steps"),
        first_order=meta_value("first_order"), task=params.get("task"),
        model=(params.get("model") or {}).get("name"), few_shot=(params.get("few_shot") or {}).get("enabled"),
    )
