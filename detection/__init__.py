"""m365-detect: streaming detection rules over Microsoft 365 audit records.

The package reads like the data flow: sources → ecs → engine (rules + kql) → alerts → state → notify.
"""
