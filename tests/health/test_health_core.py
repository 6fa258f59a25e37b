"""Health counters, per-batch aggregation, rule inputs, and the silence and drift checks (pure core)."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from detection.health import (
    Counters,
    Evaluation,
    Seen,
    Watch,
    check_drift,
    check_silence,
    combine,
    count,
    inputs_of,
    observe,
    rule_inputs,
    transitions,
)
from detection.health.aggregate import (
    _KEYS,
    ADMIN_ACTION,
    CMDLETS,
    MAX_TENANTS_PER_BATCH,
    TENANT_SETTING,
    _column,
    census_of_bodies,
    census_of_records,
    family_of,
    tally,
    with_outcomes,
)
from detection.health.counters import (
    ALERTS,
    DELIVERED,
    DELIVERY_FAILED,
    MAX_KEYS,
    OTHER,
    PIPELINE_TENANT,
    RECORDS,
    SUPPRESSED,
)
from detection.health.notices import HealthState, advance, due, heartbeat_day_due, settle
from detection.health.summary import build_summary, heartbeat_notice, render_text
from detection.kql import parse
from detection.rules import load_rules
from detection.samplegen import generate_bodies
from detection.settings import BUNDLED_RULES_DIR
from detection.sources import Limits, decode_body

T0 = datetime(2026, 11, 1, tzinfo=UTC)
TENANT = "4b2c9e11-7d3a-4f0e-9c55-1a2b3c4d5e6f"
OTHER_TENANT = "9f8e7d6c-5b4a-4321-8fed-cba987654321"
SEED_ID = "bbd1a775-8267-41fa-9232-20e5582596ac"
DAY = timedelta(days=1)
SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def record(operation: str, workload: str = "MicrosoftTeams", tenant: str = TENANT) -> dict:
    return {"Id": f"{operation}-{workload}", "Operation": operation, "Workload": workload,
            "OrganizationId": tenant.upper(), "RecordType": 25, "CreationTime": "2026-11-01T00:00:00"}


def bundled_inputs():
    return inputs_of(load_rules(BUNDLED_RULES_DIR).rules)


# ---- counters ----

def test_merging_adds_counts_and_keeps_the_earliest_since_and_latest_last():
    a = Counters(TENANT, {RECORDS: 2}, {"Exchange": Seen(2, T0, T0 + DAY)})
    b = Counters(TENANT, {RECORDS: 3, ALERTS: 1}, {"Exchange": Seen(3, T0 - DAY, T0),
                                                   "MicrosoftTeams": Seen(1, T0, T0)})
    assert a.merge(b) == b.merge(a)
    merged = a.merge(b)
    assert merged.counts == {RECORDS: 5, ALERTS: 1}
    assert merged.workloads["Exchange"] == Seen(5, T0 - DAY, T0 + DAY)
    assert merged.workloads["MicrosoftTeams"] == Seen(1, T0, T0)


def test_counters_survive_their_stored_form_and_refuse_malformed_rows():
    c = Counters(TENANT, {RECORDS: 7}, {"Exchange": Seen(7, T0, T0 + DAY)},
                 {ADMIN_ACTION: Seen(1, T0, T0)}, {"TeamsTenantSettingChanged": Seen(0, T0, None)})
    assert Counters.from_plain(TENANT, c.to_plain()) == c
    with pytest.raises(ValueError, match="workloads"):
        Counters.from_plain(TENANT, {"workloads": {"Exchange": [1, "not a time", None]}})
    with pytest.raises(ValueError, match="counts"):
        Counters.from_plain(TENANT, {"counts": {"records": "7"}})


def test_maps_stay_bounded_whatever_the_stream_holds():
    c = Counters(TENANT)
    for i in range(MAX_KEYS + 50):
        c = c.merge(Counters(TENANT, workloads={f"Workload{i}": Seen(1, T0, T0)}))
    assert len(c.workloads) <= MAX_KEYS + 1
    assert c.workloads[OTHER].count == 50


def test_counters_of_different_tenants_never_mix():
    with pytest.raises(ValueError):
        Counters(TENANT).merge(Counters(OTHER_TENANT))


# ---- one batch → one delta per tenant ----

def test_a_batch_becomes_one_delta_per_tenant_however_many_records_it_holds():
    watch = Watch.of(bundled_inputs())
    records = ([record("MailItemsAccessed", "Exchange")] * 5000
               + [record("TeamsAdminAction")] * 3 + [record("FileAccessed", "SharePoint", OTHER_TENANT)] * 2)
    deltas = observe(census_of_records(records), now=T0, watch=watch)
    assert set(deltas) == {TENANT, OTHER_TENANT}
    mine = deltas[TENANT]
    assert mine.count(RECORDS) == 5003
    assert mine.workloads == {"Exchange": Seen(5000, T0, T0), "MicrosoftTeams": Seen(3, T0, T0)}
    assert mine.families == {ADMIN_ACTION: Seen(3, T0, T0)}
    assert mine.operations["TeamsAdminAction"] == Seen(3, T0, T0)
    # Watched operations absent from the batch are recorded as looked for, not seen.
    assert mine.operations["TeamsTenantSettingChanged"] == Seen(0, T0, None)
    assert deltas[OTHER_TENANT].count(RECORDS) == 2


def test_records_without_a_tenant_or_workload_are_still_counted():
    records = [{"Operation": "X"}, {"Id": "1", "OrganizationId": 5, "Workload": None}]
    deltas = observe(census_of_records(records), now=T0, watch=Watch())
    assert deltas["unknown-tenant"].count(RECORDS) == 2
    assert deltas["unknown-tenant"].workloads["(none)"].count == 2


def test_the_census_of_bodies_agrees_with_decoding_them_in_every_producer_shape():
    limits = Limits()
    bodies = [body.data for body in generate_bodies(3000, seed=5)]
    bodies += [path.read_bytes() for path in sorted(SAMPLES.iterdir()) if path.suffix != ".md"]
    decoded = [r.raw for i, b in enumerate(bodies) for r in decode_body(b, limits, i).records]
    assert census_of_bodies(bodies, limits) == census_of_records(decoded)
    assert sum(census_of_bodies(bodies, limits).values()) >= 3000


def test_a_body_whose_keys_do_not_pair_up_is_parsed_instead():
    one = {"Id": "1", "Operation": "TeamsAdminAction", "OrganizationId": TENANT, "Workload": "MicrosoftTeams"}
    two = {"Id": "2", "Operation": "Set-Mailbox", "OrganizationId": TENANT}  # no Workload
    body = orjson.dumps([one, two, {"Id": "3", "Operation": "x", "Workload": "Exchange",
                                    "Note": {"Operation": "nested"}}])
    assert census_of_bodies([body, b"\x1f\x8bnot gzip"], Limits()) == census_of_records(orjson.loads(body))


def test_the_census_agrees_with_decoding_when_keys_vary_or_are_spelled_in_several_ways():
    limits = Limits()
    two_tenants = [record("Send", "Exchange", t) for t in (TENANT, OTHER_TENANT, TENANT)]
    escaped_value = orjson.dumps([record("Send", "Exchange")]).replace(b'"Send"', b'"S\\u0065nd"')
    plain_and_string = b"\n".join([  # one record plain, one as a Defender RawEventData string
        orjson.dumps(record("Send", "Exchange")),
        orjson.dumps({"properties": {"RawEventData": orjson.dumps(record("Send", "Exchange")).decode()}})])
    key_in_text = [record("Send", "Exchange"),
                   {**record("Send", "Exchange"), "Note": '"Workload":"Exchange"'}]
    bodies = [orjson.dumps(two_tenants), escaped_value, plain_and_string, orjson.dumps(key_in_text)]
    for body in bodies:
        decoded = [r.raw for r in decode_body(body, limits).records]
        assert census_of_bodies([body], limits) == census_of_records(decoded), body
        assert sum(census_of_records(decoded).values()) >= 1
    assert census_of_bodies([gzip.compress(bodies[0])], limits) == {
        (TENANT, "Exchange", "Send"): 2, (OTHER_TENANT, "Exchange", "Send"): 1}


@pytest.mark.parametrize("text", [
    b"",
    b'{"Workload":"Exchange"}',
    b'[{"Workload":"Exchange"},{"Workload": "Exchange"}]',  # same value, another layout
    b'[{"Workload":"Exchange"},{"Workload":"SharePoint"},{"Workload":"Exchange"}]',
    b'{"a":"\\"Workload\\":\\"Exchange\\"","Workload":"Exchange"}',  # escaped first, then plain
    b'{"Workload":"Exch\\u0061nge","b":{"Workload":"Exchange"}}',  # the first is no match
    b'{"Workload":"' + b"x" * 200 + b'","Workload":"' + b"x" * 200 + b'"}',  # too long: never a match
    # A string holding the key and value twice, the second starting on the first's closing quote:
    # the scan finds one match there, so counting must not find two.
    b'{"n":"\\"Workload\\":\\"Exchange\\"Workload\\":\\"Exchange\\""}',
    b'{"Workload":"Workload"}',
    b'[{"Workload":"Workload"},{"Workload":"Workload"}]',  # each copy holds the prefix twice
    b'[{"Workload":"Exchange","WorkloadKind":1},{"Workload":"Exchange"}]',  # a prefix that is no match
])
def test_a_key_counted_without_scanning_gives_what_the_scan_gives(text):
    key = _KEYS[1]
    column = _column(key, text)
    scanned = key.pattern.findall(text)
    assert column.n == len(scanned)
    assert (column.values if column.single is None else [column.single] * column.n) == scanned


def test_outcomes_are_counted_per_tenant_and_skips_on_the_pipeline():
    deltas = combine(count([(TENANT, ALERTS), (TENANT, ALERTS), (None, "skipped.invalid_json")]),
                     observe(census_of_records([record("TeamsAdminAction")]), now=T0, watch=Watch()))
    assert deltas[TENANT].count(ALERTS) == 2 and deltas[TENANT].count(RECORDS) == 1
    assert deltas[PIPELINE_TENANT].count("skipped.invalid_json") == 1


def test_a_tenants_outcomes_join_its_records_whatever_the_case_of_its_id():
    records = observe(census_of_records([record("TeamsAdminAction")]), now=T0, watch=Watch())
    outcomes = tally([(TENANT.upper(), ALERTS, 2), (TENANT, DELIVERED, 1), (TENANT, DELIVERY_FAILED, 0)])
    assert outcomes == {TENANT: Counters(TENANT, {ALERTS: 2, DELIVERED: 1})}  # zero counts are no write
    joined = with_outcomes(records, outcomes)
    assert set(joined) == {TENANT}
    assert joined[TENANT].counts == {RECORDS: 1, ALERTS: 2, DELIVERED: 1}


def test_outcomes_keep_a_batch_within_its_bound_of_tenants():
    records = observe(census_of_records([record("Send", "Exchange", t) for t in (TENANT, OTHER_TENANT)]),
                      now=T0, watch=Watch())
    outcomes = tally([(TENANT, ALERTS, 1), ("third-tenant", ALERTS, 1), ("fourth-tenant", ALERTS, 2),
                      (None, "skipped.invalid_json", 1)])
    joined = with_outcomes(records, outcomes, limit=3)
    assert set(joined) == {TENANT, OTHER_TENANT, "fourth-tenant", OTHER, PIPELINE_TENANT}
    assert joined[TENANT].count(ALERTS) == 1 and joined[OTHER].count(ALERTS) == 1
    assert sum(c.count(ALERTS) for c in joined.values()) == 4  # folded, never dropped
    # The redelivery timer's outcomes have no census: the same bound applies to them alone.
    many = tally((f"tenant-{i:03}", DELIVERED, 1) for i in range(150))
    bounded = with_outcomes({}, many)
    assert len(bounded) == MAX_TENANTS_PER_BATCH + 1 and bounded[OTHER].count(DELIVERED) == 50


def test_the_census_adds_up_one_tenant_written_in_different_cases():
    records = [record("Send", "Exchange", TENANT), record("Send", "Exchange", TENANT.lower())]
    records[1]["OrganizationId"] = TENANT.lower()
    assert census_of_bodies([orjson.dumps(records)], Limits()) == census_of_records(records)
    assert census_of_records(records) == {(TENANT, "Exchange", "Send"): 2}


def test_operation_families():
    assert family_of("TeamsTenantSettingChanged") == TENANT_SETTING
    assert family_of("TeamsAdminAction") == ADMIN_ACTION
    assert family_of("Set-CsTeamsAppSetupPolicy") == family_of("New-CsTeamsMeetingPolicy") == CMDLETS
    assert family_of("Set-Mailbox") is None
    assert family_of("AppPublishedToCatalog") != family_of("AppInstalled")


# ---- what a rule needs ----

@pytest.mark.parametrize(("query", "actions", "providers"), [
    ("event.action:A and event.provider:P", {"A"}, {"P"}),
    ("event.action:(A or B) and x:1", {"A", "B"}, set()),
    ("(event.action:A and x:1) or (event.action:B and y:2)", {"A", "B"}, set()),
    ("event.action:A or x:1", set(), set()),            # one branch needs no operation at all
    ("not event.action:A and event.action:B", {"B"}, set()),
    ("event.action:* and x:1", set(), set()),           # presence only
    ("event.action:Set-Cs* and event.provider:(P or Q)", {"Set-Cs*"}, {"P", "Q"}),
])
def test_required_operations_come_from_the_query_tree(query, actions, providers):
    inputs = rule_inputs("r", "rule", parse(query))
    assert {p.text for p in inputs.actions} == actions
    assert {p.text for p in inputs.providers} == providers


def test_wildcard_operations_are_watched_under_their_pattern():
    watch = Watch.of([rule_inputs("r", "rule", parse("event.action:Set-Cs*"))])
    records = [record("Set-CsTeamsAppSetupPolicy"), record("Set-Mailbox", "Exchange")]
    deltas = observe(census_of_records(records), now=T0, watch=watch)
    assert deltas[TENANT].operations["Set-Cs*"].count == 1


def test_the_bundled_rules_need_the_operations_they_are_written_for():
    by_id = {i.rule_id: i for i in bundled_inputs()}
    assert [p.text for p in by_id[SEED_ID].actions] == ["TeamsTenantSettingChanged"]
    assert [p.text for p in by_id[SEED_ID].providers] == ["MicrosoftTeams"]
    assert {p.text for p in by_id["99ea7a4f-93d8-4ece-b710-5ccb7eea72e3"].actions} == {
        "Set-CsTeamsAppSetupPolicy", "New-CsTeamsAppSetupPolicy"}


# ---- a synthetic month ----

def month_of_traffic(days: int, *, teams_ops_by_day, watch: Watch, start: datetime = T0) -> Counters:
    """Day by day, a few batches of Exchange and Teams traffic folded into one tenant's counters."""
    total = Counters(TENANT)
    for day in range(days):
        for hour in (1, 9, 17):
            now = start + day * DAY + timedelta(hours=hour)
            batch = [record("MailItemsAccessed", "Exchange")] * 20 + [
                record(op) for op in teams_ops_by_day(day)]
            total = total.merge(observe(census_of_records(batch), now=now, watch=watch)[TENANT])
    return total


def test_drift_is_reported_when_the_seed_input_moved_to_teams_admin_action():
    inputs = bundled_inputs()
    watch = Watch.of(inputs)
    # Day 0-4: admin changes still arrive as TeamsTenantSettingChanged; then only as TeamsAdminAction.
    counters = month_of_traffic(40, watch=watch, teams_ops_by_day=lambda d: (
        ["TeamsSessionStarted", "TeamsTenantSettingChanged"] if d < 5 else
        ["TeamsSessionStarted", "TeamsAdminAction"]))
    now = T0 + 40 * DAY
    result = check_drift({TENANT: counters}, inputs, now, timedelta(days=30))
    seed = result.findings[f"drift|{TENANT}|{SEED_ID}"]
    assert seed.details["arriving_instead"] == [ADMIN_ACTION]
    assert seed.message.startswith("Teams admin changes are arriving as TeamsAdminAction, but "
                                   "TeamsTenantSettingChanged has not been seen for 30 days")
    assert "may be blind" in seed.message
    assert seed.last_seen is not None and seed.last_seen < now - timedelta(days=30)
    # The rules that read TeamsAdminAction are fine.
    assert f"drift|{TENANT}|6ab3e929-b15e-476b-910f-c7b99449b230" not in result.findings
    assert f"drift|{TENANT}|6ab3e929-b15e-476b-910f-c7b99449b230" in result.evaluated


def test_no_drift_within_the_window_or_before_a_whole_window_of_watching():
    inputs = bundled_inputs()
    watch = Watch.of(inputs)
    counters = month_of_traffic(40, watch=watch, teams_ops_by_day=lambda d: (
        ["TeamsTenantSettingChanged"] if d == 20 else ["TeamsSessionStarted"]))
    result = check_drift({TENANT: counters}, inputs, T0 + 40 * DAY, timedelta(days=30))
    assert f"drift|{TENANT}|{SEED_ID}" not in result.findings  # seen 20 days ago
    # Only 10 days of history: nothing can be claimed yet, for any rule.
    young = month_of_traffic(10, watch=watch, teams_ops_by_day=lambda d: ["TeamsSessionStarted"])
    assert check_drift({TENANT: young}, inputs, T0 + 10 * DAY, timedelta(days=30)).findings == {}


def test_no_drift_when_the_workload_itself_is_not_active():
    inputs = bundled_inputs()
    watch = Watch.of(inputs)
    exchange_only = month_of_traffic(40, watch=watch, teams_ops_by_day=lambda d: [])
    result = check_drift({TENANT: exchange_only}, inputs, T0 + 40 * DAY, timedelta(days=30))
    assert result.findings == {}  # no MicrosoftTeams records at all: silence, not drift


def test_a_rule_whose_input_is_merely_absent_is_reported_without_invented_evidence():
    inputs = bundled_inputs()
    counters = month_of_traffic(40, watch=Watch.of(inputs),
                                teams_ops_by_day=lambda d: ["TeamsSessionStarted"])
    result = check_drift({TENANT: counters}, inputs, T0 + 40 * DAY, timedelta(days=30))
    catalog = result.findings[f"drift|{TENANT}|6ae6bc28-1ebe-4f2f-8fac-47c31672795c"]
    assert catalog.details["arriving_instead"] == []
    assert catalog.message.startswith("MicrosoftTeams records are arriving, but AppPublishedToCatalog / "
                                      "AppUpdatedInCatalog has not been seen in 30 days of watching")


# ---- silence and recovery, each notified once ----

def snapshot_with(last: datetime, since: datetime = T0) -> dict[str, Counters]:
    return {TENANT: Counters(TENANT, {RECORDS: 10}, {"Exchange": Seen(10, since, last)})}


def run_checks(state: HealthState, snapshot, now) -> HealthState:
    silence = check_silence(snapshot, now, timedelta(hours=24))
    return advance(state, [silence], now=now, destinations=["teams", "slack"],
                   forget_after=timedelta(days=32))


def test_silence_and_recovery_are_each_notified_exactly_once():
    state = HealthState()
    last = T0 + 3 * DAY
    notices = []
    # The timer runs every 15 minutes for three days; the source stops at `last` and returns on day 5.
    now = last
    while now < last + 3 * DAY:
        snapshot = snapshot_with(last if now < last + 2 * DAY else now)
        before = {p.notice_id for p in state.pending}
        state = run_checks(state, snapshot, now)
        notices.extend(p for p in state.pending if p.notice_id not in before)
        state = settle(state, {(p.notice_id, d): ("delivered", None) for p, d in due(state, now)},
                       now=now, max_age=timedelta(days=3))
        now += timedelta(minutes=15)
    titles = [n.summary["title"] for n in notices]
    assert titles == ["Detection health: 1 source silent", "Detection health: 1 source recovered"]
    assert "No Exchange records have arrived for 1 day" in notices[0].summary["Silent 1"]
    assert notices[1].summary["Resolved 1"] == f"[{TENANT}] Exchange records are arriving again."
    assert state.marks == {} and state.pending == ()


def test_a_workload_seen_only_in_one_burst_is_not_reported_silent():
    burst = snapshot_with(T0 + timedelta(minutes=5))
    assert check_silence(burst, T0 + 10 * DAY, timedelta(hours=24)).findings == {}


def test_a_silent_source_whose_counters_expire_is_not_reported_as_recovered():
    state = run_checks(HealthState(), snapshot_with(T0 + 2 * DAY), T0 + 4 * DAY)
    assert len(state.marks) == 1
    state = run_checks(state, {}, T0 + 40 * DAY)  # rows gone: the key cannot be judged any more
    assert [p.summary["title"] for p in state.pending] == ["Detection health: 1 source silent"]
    assert state.marks == {}  # forgotten after forget_after, quietly


def test_a_notice_is_retried_for_a_destination_that_failed_and_dropped_when_too_old():
    state = run_checks(HealthState(), snapshot_with(T0 + 2 * DAY), T0 + 4 * DAY)
    now = T0 + 4 * DAY
    (notice,) = state.pending
    state = settle(state, {(notice.notice_id, "teams"): ("delivered", None),
                           (notice.notice_id, "slack"): ("retry", "HTTP 503 from hooks.slack.com")},
                   now=now, max_age=timedelta(days=3))
    (left,) = state.pending
    assert left.owed == ("slack",) and left.attempts == 1 and left.next_attempt_at > now
    assert due(state, now) == [] and due(state, left.next_attempt_at) == [(left, "slack")]
    state = settle(state, {(notice.notice_id, "slack"): ("retry", "again")}, now=now + 4 * DAY,
                   max_age=timedelta(days=3))
    assert state.pending == () and state.given_up == 1


def test_the_state_survives_its_stored_form():
    state = run_checks(HealthState(), snapshot_with(T0 + 2 * DAY), T0 + 4 * DAY)
    assert HealthState.from_plain(state.to_plain()) == state
    with pytest.raises(ValueError, match="malformed"):
        HealthState.from_plain({"marks": [["silence"]]})


def test_transitions_keep_a_condition_that_still_holds():
    silence = check_silence(snapshot_with(T0 + 2 * DAY), T0 + 4 * DAY, timedelta(hours=24))
    first = transitions([silence], {}, T0 + 4 * DAY, forget_after=timedelta(days=30))
    again = transitions([silence], first.marks, T0 + 5 * DAY, forget_after=timedelta(days=30))
    assert len(first.started) == 1 and again.started == () and again.ended == ()
    assert again.marks == first.marks


# ---- heartbeat and summary ----

def test_the_heartbeat_is_due_once_per_finished_day():
    state = HealthState()
    now = datetime(2026, 12, 10, 0, 15, tzinfo=UTC)
    assert heartbeat_day_due(state, now, enabled=False) is None
    day = heartbeat_day_due(state, now, enabled=True)
    assert day.isoformat() == "2026-12-09"
    state = advance(state, [], now=now, destinations=["teams"], forget_after=DAY,
                    heartbeat=(day, {"title": "x"}))
    assert heartbeat_day_due(state, now + timedelta(hours=20), enabled=True) is None
    assert heartbeat_day_due(state, now + DAY, enabled=True).isoformat() == "2026-12-10"
    assert [p.kind for p in state.pending] == ["heartbeat"]


def test_the_summary_counts_and_lists_findings():
    inputs = bundled_inputs()
    counters = month_of_traffic(40, watch=Watch.of(inputs), teams_ops_by_day=lambda d: (
        ["TeamsAdminAction"] if d % 2 else ["TeamsSessionStarted"]))
    counters = counters.merge(Counters(TENANT, {ALERTS: 3, "delivery_failed": 1}))
    now = T0 + 40 * DAY
    summary = build_summary(
        {TENANT: counters, PIPELINE_TENANT: Counters(PIPELINE_TENANT, {"skipped.invalid_json": 2})},
        first_day=(now - DAY).date(), last_day=now.date(),
        silence=check_silence({TENANT: counters}, now + 2 * DAY, timedelta(hours=24)),
        drift=check_drift({TENANT: counters}, inputs, now, timedelta(days=30)),
        now=now, silence_threshold=timedelta(hours=24), drift_window=timedelta(days=30))
    assert summary["totals"]["records"] == counters.count(RECORDS)
    assert summary["totals"]["alerts"] == 3 and summary["totals"]["skipped"] == 2
    assert summary["status"] == "attention"
    assert {f["subject"] for f in summary["silence"]} == {"Exchange", "MicrosoftTeams"}
    assert any(f["rule_id"] == SEED_ID for f in summary["drift"])
    text = render_text(summary)
    assert "rules that may be blind: " in text and "TeamsTenantSettingChanged" in text
    notice = heartbeat_notice(summary)
    assert notice["Alerts"] == "3" and notice["Delivery failures"] == "1"
    assert notice["Silent sources"] == "2"


def tenant_counters(tenant: str, records: int, **counts: int) -> Counters:
    return Counters(tenant, {RECORDS: records, **counts}, {"Exchange": Seen(records, T0, T0)})


def test_the_summary_shows_each_tenants_alerts_and_deliveries_beside_its_records():
    empty = Evaluation({}, frozenset())
    period = {TENANT: tenant_counters(TENANT, 5, alerts=1, delivered=2),
              OTHER_TENANT: tenant_counters(OTHER_TENANT, 9),
              "third": tenant_counters("third", 1, alerts=3, suppressed=2, delivered=1, delivery_failed=1),
              PIPELINE_TENANT: Counters(PIPELINE_TENANT, {"skipped.invalid_json": 4})}
    summary = build_summary(period, first_day=T0.date(), last_day=T0.date(), silence=empty, drift=empty,
                            now=T0, silence_threshold=DAY, drift_window=30 * DAY)
    assert summary["totals"]["alerts"] == 4 and summary["totals"]["delivered"] == 3
    assert summary["totals"]["skipped"] == 4
    by_id = {t["tenant_id"]: t for t in summary["tenants"]}
    assert set(by_id) == {TENANT, OTHER_TENANT, "third"}
    assert (by_id["third"][ALERTS], by_id["third"][SUPPRESSED], by_id["third"][DELIVERY_FAILED]) == (3, 2, 1)
    lines = render_text(summary).splitlines()
    at = lines.index(f"tenant {TENANT}: 5 records (Exchange 5)")
    assert lines[at + 1] == ("  alerts 1  suppressed 0  excepted 0  overflow 0  delivered 2  "
                             "delivery failures 0")
    quiet = lines.index(f"tenant {OTHER_TENANT}: 9 records (Exchange 9)")
    assert not lines[quiet + 1].startswith("  alerts")  # nothing came of its records: no outcome line
    notice = heartbeat_notice(summary)
    # The tenant with a delivery failure first, then by alerts.
    assert notice["Tenant 1"] == "[third] records 1, alerts 3, suppressed 2, delivered 1, delivery failures 1"
    assert notice["Tenant 2"].startswith(f"[{TENANT}] records 5, alerts 1,")
    assert notice["Tenant 3"].startswith(f"[{OTHER_TENANT}] records 9, alerts 0,")


def test_the_heartbeat_lists_tenants_only_when_there_are_several_and_a_bounded_number():
    empty = Evaluation({}, frozenset())

    def notice_for(period: dict) -> dict:
        return heartbeat_notice(build_summary(period, first_day=T0.date(), last_day=T0.date(), silence=empty,
                                              drift=empty, now=T0, silence_threshold=DAY,
                                              drift_window=30 * DAY))

    alone = notice_for({TENANT: tenant_counters(TENANT, 5, alerts=1)})
    assert not any(key.startswith("Tenant") for key in alone) and alone["Alerts"] == "1"
    many = notice_for({f"tenant-{i}": tenant_counters(f"tenant-{i}", 1, alerts=i) for i in range(8)})
    shown = [many[f"Tenant {i}"].split("]")[0] for i in range(1, 6)]
    assert shown == [f"[tenant-{i}" for i in (7, 6, 5, 4, 3)]  # the most alerts first
    assert "Tenant 6" not in many and many["More tenants"] == "3 more not shown"


def test_a_day_without_any_record_needs_attention_even_without_findings():
    empty = Evaluation({}, frozenset())
    now = T0 + DAY
    summary = build_summary({}, first_day=T0.date(), last_day=T0.date(), silence=empty, drift=empty, now=now,
                            silence_threshold=DAY, drift_window=30 * DAY)
    assert summary["status"] == "attention"
    assert summary["attention"] == ["no records arrived in the period"]
    assert heartbeat_notice(summary)["title"].endswith(": attention (no records arrived in the period)")
