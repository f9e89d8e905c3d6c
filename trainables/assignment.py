"""A language assignment (method, support languages, query languages) written as one short string.

    baseline                the English model as is
    x-maml:hi               support and query from hi (X-MAML; several: x-maml:bg+de)
    xla-maml:en>hi          support en, query hi (XLA-MAML; several: xla-maml:bg+de>hi)

Strings, not dicts, so an assignment is one categorical value for `tune.grid_search`, `tune.choice`
and Optuna alike, and one readable column in the analysis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from xlamaml.trainables.config_parsing import merge
from xlamaml.trainables.errors import InputError
from xlamaml.trainables.languages import XNLI_LANGS, check_langs
from xlamaml.trainables.methods import aux_langs, language_rule_error


@dataclass(frozen=True)
class Assignment:
    """A cell of a sweep: its method and its support and query languages (see the module's docstring)."""

    method: str
    support: tuple[str, ...] = ()
    query: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """Return the assignment's string form (what `parse_assignment` reads)."""
        if self.method == "baseline":
            return "baseline"
        if self.method == "x-maml":
            return f"x-maml:{'+'.join(self.query)}"
        return f"xla-maml:{'+'.join(self.support)}>{'+'.join(self.query)}"

    @property
    def aux(self) -> str:
        """Return the auxiliary languages as one label ('' for the baseline), e.g. 'hi' or 'bg+de'."""
        langs = self.query if self.method == "x-maml" else tuple(dict.fromkeys(self.support + self.query))
        return "+".join(lang for lang in langs if lang != "en") or "+".join(langs)

    @property
    def aux_langs(self) -> tuple[str, ...]:
        """Return the auxiliary languages: those whose data the meta stage's episodes read, less English."""
        return tuple(aux_langs(self.method, self.support, self.query))

    def trained_on(self, lang: str) -> bool:
        """Return whether this cell's meta stage trained on `lang`'s data beyond what every cell saw, so that its score
        on `lang` is no transfer result: `lang` is one of its auxiliary languages. English never is: every cell, the
        baseline included, was fine-tuned on English in the English stage, so an `en>X` cell (or x-maml:en) is judged
        on English like on any target, as the paper's tables and avg* do. The adaptive rule, the picks, the heatmap
        marks, the averages and the benchmarks all ask this."""
        return lang in self.aux_langs

    def overrides(self) -> dict[str, Any]:
        """Return the config keys this assignment sets (nested, for `trainables.config.merge`)."""
        if self.method == "baseline":
            return {"method": "baseline"}
        if self.method == "x-maml":
            # Same-language episodes cannot be translations of each other.
            return {"method": "x-maml", "meta": {"support_langs": list(self.query),
                                                 "query_langs": list(self.query), "parallel": False}}
        return {"method": "xla-maml", "meta": {"support_langs": list(self.support), "query_langs": list(self.query)}}


def parse_assignment(text: str, known: tuple[str, ...] = XNLI_LANGS) -> Assignment:
    """Return the Assignment written as `text`, or raise ValueError saying what was expected."""
    expected = "expected 'baseline', 'x-maml:<lang>[+<lang>]' or 'xla-maml:<support>[+...]><query>[+...]'"
    method, _, langs = text.partition(":")
    where = f"assignment {text!r}"
    if method == "baseline" and not langs:
        return Assignment("baseline")
    if method == "x-maml" and langs and ">" not in langs:
        return Assignment("x-maml", (), tuple(check_langs(langs.split("+"), known, where)))
    if method == "xla-maml" and langs.count(">") == 1:
        support, query = langs.split(">")
        a = Assignment("xla-maml", tuple(check_langs(support.split("+"), known, where)),
                       tuple(check_langs(query.split("+"), known, where)))
        problem = language_rule_error(a.method, a.support, a.query)
        if problem:
            raise InputError(f"{where}: {problem}")
        return a
    raise InputError(f"{where}: {expected}")


def flat_trial(config: dict[str, Any]) -> dict[str, Any]:
    """Return a trial config with its grid cell (`trial`: {"assignment", "seed"}, how a grid sweep names each trial)
    moved to the top level, where a single run keeps them."""
    if not isinstance(config.get("trial"), dict):
        return config
    # Deep: a rebuilt run's cell also carries its extra grid axes' values ({"meta": {"sampling": "cover"}}).
    return merge({k: v for k, v in config.items() if k != "trial"}, config["trial"])


def folder_prefix(assignment: Any, seed: Any) -> str:
    """Return the start of a sweep trial's folder name: its assignment made filesystem-safe and its seed
    ('xla-maml:en>hi', 0 -> 'xla-maml_en-hi_s0_'); the trial id follows."""
    a = str(assignment if assignment is not None else "run").replace(":", "_").replace(">", "-").replace("+", "")
    return f"{a}_s{seed}_"
