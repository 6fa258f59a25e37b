"""The bundled rule files (*.toml, data) and their loader."""

from detection.rules.loader import Rule, RuleError, RuleSet, SkippedRule, load_rules

__all__ = ["Rule", "RuleError", "RuleSet", "SkippedRule", "load_rules"]
