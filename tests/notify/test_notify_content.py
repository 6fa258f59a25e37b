"""The shared content and text helpers: cleaning, cutting, guides and links."""

from __future__ import annotations

from detection.notify.base import AlertMessage
from detection.notify.content import DEFAULT_GUIDE, MAX_STEPS, NOT_SET, content_for
from detection.notify.text import TRUNCATION_MARKER, clean, slack_code, slack_escape, truncate
from detection.rules.loader import Guide
from tests.notify.notify_samples import make_alert


def test_clean_makes_one_display_line():
    assert clean("a\r\nb\tc\x00d\x1b[1m\u2028e") == "a b c d [1m e"
    assert clean("  spaced   out  ") == "spaced out"
    assert clean("abc\u202edef\u2066") == "abc\ufffddef\ufffd"
    assert clean(47) == "47"


def test_truncate_keeps_the_limit_and_marks_the_cut():
    assert truncate("short", 10) == "short"
    cut = truncate("x" * 100, 20)
    assert len(cut) == 20 and cut.endswith(TRUNCATION_MARKER)
    assert truncate("x" * 100, 5) == TRUNCATION_MARKER[:5]
    assert truncate("anything", 0) == ""


def test_slack_escaping():
    assert slack_escape("<!channel> & <@U1>") == "&lt;!channel&gt; &amp; &lt;@U1&gt;"
    assert slack_code("a`b<c") == "`a\u02cbb&lt;c`"


def test_guides_from_rules_replace_the_default_steps():
    alert = make_alert()
    default = content_for(AlertMessage(alert))
    assert [s.items for s in default.steps] == [DEFAULT_GUIDE.investigation, DEFAULT_GUIDE.response]
    guide = Guide(investigation=("Look here.",), response=tuple(f"step {i}" for i in range(20)))
    ruled = content_for(AlertMessage(alert), {alert.rule_id: guide})
    assert ruled.steps[0].items == ("Look here.",)
    assert ruled.steps[1].items == tuple(f"step {i}" for i in range(MAX_STEPS))
    half = content_for(AlertMessage(alert), {alert.rule_id: Guide(investigation=("Only this.",))})
    assert half.steps[1].items == DEFAULT_GUIDE.response


def test_missing_values_are_shown_as_a_dash():
    content = content_for(AlertMessage(make_alert(user_id=None, source_ip="  ", old_value=None)))
    facts = {f.label: f.value for f in content.facts}
    assert facts["Changed by"] == NOT_SET and facts["Source IP"] == NOT_SET
    assert facts["Change"] == f"{NOT_SET} → True"


def test_only_plain_https_tactic_links_become_buttons():
    threat = (
        {"tactic": {"id": "TA0003", "name": "Persistence", "reference": "https://attack.mitre.org/tactics/TA0003/"},
         "technique": [{"id": "T1098", "name": "Account Manipulation"}]},
        {"tactic": {"id": "TA0005", "name": "Defense Evasion", "reference": "javascript:alert(1)"}},
        {"tactic": {"id": "TA0004", "name": "Privilege Escalation", "reference": "https://x.example/a b"}},
    )
    content = content_for(AlertMessage(make_alert(threat=threat)))
    assert [link.url for link in content.links][2:] == ["https://attack.mitre.org/tactics/TA0003/"]
    facts = {f.label: f.value for f in content.facts}
    assert facts["MITRE ATT&CK"] == ("Persistence (TA0003): T1098 Account Manipulation; "
                                     "Defense Evasion (TA0005); Privilege Escalation (TA0004)")


def test_the_delivery_failed_steps_do_not_promise_a_resend_to_the_failed_destination():
    from detection.notify.base import DeliveryFailedMessage
    from detection.notify.content import delivery_failed_content

    content = delivery_failed_content(DeliveryFailedMessage(make_alert(), "teams", "HTTP 410"))
    steps = " ".join(content.steps[0].items)
    assert "not sent there again" in steps and "status stays failed" in steps


def test_the_overflow_delivery_failed_steps_point_at_the_stored_alerts_and_promise_no_resend():
    from detection.notify.base import DeliveryFailedMessage
    from detection.notify.content import delivery_failed_content
    from tests.notify.notify_samples import overflow_message

    content = delivery_failed_content(DeliveryFailedMessage(overflow_message(), "slack", "HTTP 410"))
    first, _, last = content.steps[0].items
    assert "status overflow" in first and "none was lost" in first
    assert "this summary is not sent there again" in last
    assert content.intro is not None and content.intro.startswith("250 alerts past the rule's max_signals")
    assert content.severity == "medium" and content.kind == "delivery_failed"
