"""Source health and rule-input drift: is the pipeline still receiving what the rules need?

Pure core: `counters` (the per-tenant monoid), `observe` (one batch → one delta per tenant), `inputs`
(what each rule needs, from its query tree), `checks` (silence and drift over a snapshot), `summary`
(the one summary the command and the heartbeat share) and `notices` (what is owed to whom, once).
"""

from detection.health.aggregate import Watch, combine, count, family_of, observe
from detection.health.checks import Evaluation, Finding, Mark, check_drift, check_silence, transitions
from detection.health.counters import PIPELINE_TENANT, Counters, Seen
from detection.health.inputs import Pattern, RuleInputs, inputs_of, rule_inputs

__all__ = [
    "PIPELINE_TENANT",
    "Counters",
    "Evaluation",
    "Finding",
    "Mark",
    "Pattern",
    "RuleInputs",
    "Seen",
    "Watch",
    "check_drift",
    "check_silence",
    "combine",
    "count",
    "family_of",
    "inputs_of",
    "observe",
    "rule_inputs",
    "transitions",
]
