"""Delivery against real HTTP servers on 127.0.0.1: payloads as posted, retries, Retry-After, permanent
failures, timeouts, pacing, and webhook URLs kept out of errors and logs."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import socket
import time
from datetime import timedelta
from email.utils import format_datetime

import pytest
from werkzeug import Request, Response

from detection.notify.base import (
    AlertMessage,
    DeliveryFailedMessage,
    HealthMessage,
    OverflowMessage,
    destinations_from_settings,
    next_attempt_delay,
    parse_retry_after,
)
from detection.notify.console import ConsoleDestination
from detection.notify.slack import SlackDestination, slack_payload
from detection.notify.teams import TeamsDestination, teams_payload
from detection.notify.webhook import WebhookDestination
from detection.settings import Settings, SettingsError
from tests.notify.notify_samples import all_messages, make_alert

pytestmark = pytest.mark.integration

SECRET_PATH = "/workflows/5f1e0c/triggers/manual/paths/invoke"
SECRET_QUERY = "sig=Zm9vYmFyU2VjcmV0"


def secret_url(server, path: str = SECRET_PATH) -> str:
    return server.url_for(path) + "?" + SECRET_QUERY


def teams(server, fake_time, **options) -> TeamsDestination:
    options.setdefault("random", lambda: 1.0)
    return TeamsDestination(secret_url(server), sleep=fake_time.sleep, clock=fake_time.clock, **options)


def slack(server, fake_time, **options) -> SlackDestination:
    options.setdefault("random", lambda: 1.0)
    return SlackDestination(secret_url(server), sleep=fake_time.sleep, clock=fake_time.clock, **options)


def expect(server, path: str = SECRET_PATH):
    return server.expect_ordered_request(path, method="POST", query_string=SECRET_QUERY)


def assert_no_secret(text: str | None) -> None:
    assert text is not None
    assert SECRET_PATH not in text and "Zm9vYmFyU2VjcmV0" not in text and "5f1e0c" not in text


# ---- what is posted, and how the answer is read ----

def test_teams_posts_the_envelope_and_202_empty_is_accepted(server, fake_time):
    message = AlertMessage(make_alert())
    expect(server).respond_with_data("", status=202)
    outcome = teams(server, fake_time).send(message)
    assert (outcome.status, outcome.http_status, outcome.error) == ("accepted", 202, None)
    assert outcome.done
    request, _ = server.log[0]
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.get_data()) == teams_payload(message)
    attachment = json.loads(request.get_data())["attachments"][0]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert attachment["contentUrl"] is None
    assert attachment["content"]["type"] == "AdaptiveCard" and attachment["content"]["version"] == "1.4"


def test_slack_posts_text_and_blocks_and_200_ok_is_delivered(server, fake_time):
    message = AlertMessage(make_alert(), suppressed_count=4)
    expect(server).respond_with_data("ok", status=200)
    outcome = slack(server, fake_time).send(message)
    assert (outcome.status, outcome.http_status) == ("delivered", 200)
    body = json.loads(server.log[0][0].get_data())
    assert body == slack_payload(message)
    assert set(body) == {"text", "blocks"}


def test_slack_2xx_without_ok_is_only_accepted(server, fake_time):
    expect(server).respond_with_data("", status=204)
    outcome = slack(server, fake_time).send(AlertMessage(make_alert()))
    assert outcome.status == "accepted"


def test_webhook_body_is_the_alert_signed_over_the_exact_bytes(server, fake_time):
    secret = "whsec-test-key"
    message = AlertMessage(make_alert(), suppressed_count=2)
    expect(server).respond_with_data("", status=200)
    destination = WebhookDestination(secret_url(server), secret=secret, sleep=fake_time.sleep,
                                     clock=fake_time.clock)
    outcome = destination.send(message)
    assert outcome.status == "delivered"
    request, _ = server.log[0]
    body = request.get_data()
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request.headers["X-Signature-256"], expected)
    assert request.headers["Idempotency-Key"] == message.alert.alert_id
    assert request.headers["X-Event-Type"] == "alert"
    document = json.loads(body)
    assert document["type"] == "alert" and document["id"] == message.alert.alert_id
    assert document["suppressed_count"] == 2
    assert document["alert"] == json.loads(json.dumps(message.alert.to_dict()))


def test_webhook_without_secret_is_unsigned_and_notices_have_their_own_keys(server, fake_time):
    alert = make_alert()
    for _ in range(3):
        expect(server).respond_with_data("", status=202)
    destination = WebhookDestination(secret_url(server), sleep=fake_time.sleep, clock=fake_time.clock)
    messages = [DeliveryFailedMessage(alert, "teams", "HTTP 404 from example"),
                dict(all_messages())["overflow"], HealthMessage({"title": "ok"})]
    assert [destination.send(m).status for m in messages] == ["delivered"] * 3
    keys = [request.headers["Idempotency-Key"] for request, _ in server.log]
    assert all("X-Signature-256" not in request.headers for request, _ in server.log)
    assert len(set(keys)) == 3 and alert.alert_id not in keys
    assert [json.loads(r.get_data())["type"] for r, _ in server.log] == ["delivery_failed", "overflow",
                                                                          "health"]


# ---- retries ----

def test_500_is_retried_with_backoff_then_succeeds(server, fake_time):
    expect(server).respond_with_data("busy", status=500)
    expect(server).respond_with_data("", status=202)
    outcome = teams(server, fake_time).send(AlertMessage(make_alert()))
    assert outcome.status == "accepted"
    assert len(server.log) == 2
    assert fake_time.sleeps == [0.5]


def test_persistent_5xx_ends_in_retry_after_bounded_attempts(server, fake_time):
    for _ in range(3):
        expect(server).respond_with_data("down", status=503)
    outcome = teams(server, fake_time, random=lambda: 0.0).send(AlertMessage(make_alert()))
    assert (outcome.status, outcome.http_status) == ("retry", 503)
    assert len(server.log) == 3
    assert fake_time.sleeps == [0.25, 0.5]  # exponential, with the jitter at its low end


def test_429_waits_for_retry_after_seconds(server, fake_time):
    expect(server).respond_with_data("", status=429, headers={"Retry-After": "3"})
    expect(server).respond_with_data("ok", status=200)
    outcome = slack(server, fake_time).send(AlertMessage(make_alert()))
    assert outcome.status == "delivered"
    assert fake_time.sleeps == [3.0]


def test_429_waits_until_a_retry_after_date(server, fake_time):
    when = fake_time.now + timedelta(seconds=5)
    retry_after = format_datetime(when, usegmt=True)
    expect(server).respond_with_data("", status=429, headers={"Retry-After": retry_after})
    expect(server).respond_with_data("", status=202)
    outcome = teams(server, fake_time).send(AlertMessage(make_alert()))
    assert outcome.status == "accepted"
    assert fake_time.sleeps == [5.0]


def test_429_with_a_long_retry_after_is_left_to_the_outbox(server, fake_time):
    expect(server).respond_with_data("", status=429, headers={"Retry-After": "120"})
    outcome = slack(server, fake_time).send(AlertMessage(make_alert()))
    assert (outcome.status, outcome.http_status, outcome.retry_after) == ("retry", 429, 120.0)
    assert len(server.log) == 1 and fake_time.sleeps == []
    assert next_attempt_delay(1, retry_after=outcome.retry_after) == timedelta(seconds=120)


def test_retry_after_holds_back_the_next_messages_to_that_destination(server, fake_time):
    expect(server).respond_with_data("", status=429, headers={"Retry-After": "120"})
    expect(server).respond_with_data("ok", status=200)
    destination = slack(server, fake_time)
    assert destination.send(AlertMessage(make_alert())).status == "retry"
    fake_time.now += timedelta(seconds=30)
    held = destination.send(AlertMessage(make_alert()))  # the next alert of the burst
    assert (held.status, held.http_status, held.retry_after) == ("retry", None, 90.0)
    assert "Retry-After" in held.error and "127.0.0.1" in held.error
    assert len(server.log) == 1  # not sent into the pause
    fake_time.now += timedelta(seconds=85)
    assert destination.send(AlertMessage(make_alert())).status == "delivered"
    assert fake_time.sleeps == [5.0]  # the last seconds of the pause are waited out in the call
    assert len(server.log) == 2


def test_429_is_really_waited_for_without_an_injected_sleep(server):
    expect(server).respond_with_data("", status=429, headers={"Retry-After": "1"})
    expect(server).respond_with_data("", status=202)
    destination = TeamsDestination(secret_url(server))
    started = time.monotonic()
    assert destination.send(AlertMessage(make_alert())).status == "accepted"
    assert time.monotonic() - started >= 0.95


@pytest.mark.parametrize(("status", "body"), [(410, "channel_is_archived"), (404, "channel_not_found"),
                                              (403, "action_prohibited"), (400, "invalid_payload")])
def test_permanent_answers_fail_at_once(server, fake_time, status, body, caplog):
    caplog.set_level(logging.WARNING, logger="detection.notify")
    expect(server).respond_with_data(body, status=status)
    outcome = slack(server, fake_time).send(AlertMessage(make_alert()))
    assert (outcome.status, outcome.http_status) == ("failed", status)
    assert outcome.error == f"HTTP {status} from 127.0.0.1: {body}"
    assert len(server.log) == 1 and fake_time.sleeps == []
    assert "permanent delivery failure" in caplog.text


def test_redirects_are_not_followed(server, fake_time):
    expect(server).respond_with_data("", status=302, headers={"Location": server.url_for("/elsewhere")})
    server.expect_request("/elsewhere").respond_with_data("ok")
    outcome = slack(server, fake_time).send(AlertMessage(make_alert()))
    assert (outcome.status, outcome.http_status) == ("failed", 302)
    assert [request.path for request, _ in server.log] == [SECRET_PATH]


def test_a_server_slower_than_the_read_timeout_gives_retry(own_server, fake_time):
    server = own_server

    def slow(request: Request) -> Response:
        time.sleep(3)
        return Response("", status=202)

    server.expect_request(SECRET_PATH).respond_with_handler(slow)
    settings = Settings.from_env({"TEAMS_WEBHOOK_URL": secret_url(server), "HTTP_READ_TIMEOUT": "0.3"})
    [destination] = destinations_from_settings(settings, sleep=fake_time.sleep, clock=fake_time.clock)
    destination.max_attempts = 2
    started = time.monotonic()
    outcome = destination.send(AlertMessage(make_alert()))
    assert (outcome.status, outcome.http_status) == ("retry", None)
    assert outcome.error.startswith("timed out talking to 127.0.0.1")
    assert time.monotonic() - started < 2.5  # gave up on each attempt at the read timeout
    assert len(fake_time.sleeps) == 1  # one backoff between the two attempts


def test_connection_refused_gives_retry_without_the_url(fake_time):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}{SECRET_PATH}?{SECRET_QUERY}"
    destination = TeamsDestination(url, sleep=fake_time.sleep, clock=fake_time.clock)
    outcome = destination.send(AlertMessage(make_alert()))
    assert outcome.status == "retry"
    assert outcome.error.startswith("network error talking to 127.0.0.1 (ConnectError)")
    assert_no_secret(outcome.error)


def test_an_answer_that_cannot_be_decoded_gives_retry(server, fake_time):
    for _ in range(3):
        expect(server).respond_with_data(b"not gzip at all", status=200, headers={"Content-Encoding": "gzip"})
    outcome = slack(server, fake_time).send(AlertMessage(make_alert()))
    assert outcome.status == "retry"
    assert outcome.error == "bad answer from 127.0.0.1 (DecodingError)"


def test_a_message_that_cannot_be_rendered_fails_without_a_request(server, fake_time):
    outcome = teams(server, fake_time).send(object())  # type: ignore[arg-type]
    assert outcome.status == "failed" and "could not build the message" in outcome.error
    assert server.log == []


# ---- secrets stay out of errors and logs ----

def test_webhook_url_never_appears_in_errors_or_logs(server, fake_time, caplog):
    caplog.set_level(logging.DEBUG)
    expect(server).respond_with_data(f"gone: {secret_url(server)} {SECRET_PATH}", status=410)
    expect(server).respond_with_data("", status=500)
    expect(server).respond_with_data("", status=500)
    expect(server).respond_with_data("", status=500)
    expect(server).respond_with_data("", status=202)
    destination = teams(server, fake_time)
    outcomes = [destination.send(AlertMessage(make_alert())) for _ in range(3)]
    assert [o.status for o in outcomes] == ["failed", "retry", "accepted"]
    for outcome in outcomes[:2]:
        assert_no_secret(outcome.error)
        assert "127.0.0.1" in outcome.error
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name != "werkzeug")  # not the test server
    assert "HTTP Request: POST http://127.0.0.1/…" in ours  # httpx's own request line, redacted
    assert_no_secret(ours)
    assert_no_secret(repr(destination))


def test_an_answer_echoing_one_part_of_the_url_keeps_that_part_out(server, fake_time):
    # A Slack-style secret path segment and a SOAR-style token, each echoed alone, one percent-decoded.
    path = "/services/T0AB12CD/B0EF34GH/abcdEFGH1234ijklMNOP5678"
    url = server.url_for(path) + "?token=s3cr%2Ft-t0ken&api-version=2016-06-01"
    echoes = ["no channel for abcdEFGH1234ijklMNOP5678", "bad token s3cr/t-t0ken", "token=s3cr%2Ft-t0ken"]
    for echo in echoes:
        server.expect_ordered_request(path, method="POST").respond_with_data(echo, status=403)
    destination = WebhookDestination(url, sleep=fake_time.sleep, clock=fake_time.clock)
    errors = [destination.send(AlertMessage(make_alert())).error or "" for _ in echoes]
    assert errors[0] == "HTTP 403 from 127.0.0.1: no channel for …"
    for error in errors:
        assert "abcdEFGH1234" not in error and "s3cr" not in error and "t0ken" not in error, error


def test_only_https_urls_are_accepted_except_to_this_machine():
    for bad in ("http://hooks.example.com/services/T000/B000/XXXXSECRET", "ftp://example.com/XXXXSECRET",
                "hooks.example.com/XXXXSECRET", ""):
        with pytest.raises(ValueError) as raised:
            SlackDestination(bad)
        assert "XXXXSECRET" not in str(raised.value)
    for good in ("https://hooks.example.com/services/T/B/X", "http://127.0.0.1:8080/x", "http://localhost/x"):
        assert SlackDestination(good).host in ("hooks.example.com", "127.0.0.1", "localhost")
    with pytest.raises(SettingsError):
        Settings.from_env({"TEAMS_WEBHOOK_URL": "http://prod.example.com/XXXXSECRET"})


# ---- pacing ----

@pytest.mark.parametrize(("make", "answer", "interval"), [(slack, "ok", 1.0), (teams, "", 0.25)])
def test_a_burst_is_paced_per_destination(server, fake_time, make, answer, interval):
    for _ in range(3):
        expect(server).respond_with_data(answer, status=200)
    destination = make(server, fake_time)
    for _ in range(3):
        assert destination.send(AlertMessage(make_alert())).done
    assert fake_time.sleeps == [interval, interval]


def test_no_wait_when_the_last_send_is_long_past(server, fake_time):
    for _ in range(2):
        expect(server).respond_with_data("ok", status=200)
    destination = slack(server, fake_time)
    destination.send(AlertMessage(make_alert()))
    fake_time.now += timedelta(seconds=5)
    destination.send(AlertMessage(make_alert()))
    assert fake_time.sleeps == []


# ---- the configured set, thresholds, scheduling ----

def test_destinations_from_settings_builds_what_is_configured(server):
    settings = Settings.from_env({
        "TEAMS_WEBHOOK_URL": secret_url(server), "SLACK_WEBHOOK_URL": secret_url(server),
        "WEBHOOK_URL": secret_url(server), "WEBHOOK_SECRET": "k",
        "TEAMS_MIN_SEVERITY": "high", "SLACK_MIN_SEVERITY": "medium"})
    destinations = destinations_from_settings(settings)
    assert [d.name for d in destinations] == ["teams", "slack", "webhook"]
    assert [d.min_severity for d in destinations] == ["high", "medium", "low"]


def test_no_destination_configured_means_the_console(capsys):
    stream = io.StringIO()
    [console] = destinations_from_settings(Settings.from_env({}), console_stream=stream)
    assert isinstance(console, ConsoleDestination) and console.name == "console"
    assert console.send(AlertMessage(make_alert(user_id="evil\x1b[2J\nuser"))).status == "delivered"
    text = stream.getvalue()
    assert "no webhook configured" in text
    assert "evil [2J user" in text and "\x1b" not in text
    assert "https://purview.microsoft.com/audit/auditsearch" in text


def test_severity_threshold_applies_to_alerts_only():
    destination = SlackDestination("https://hooks.example.com/x", min_severity="high")
    verdicts = {s: destination.accepts(AlertMessage(make_alert(severity=s)))
                for s in ("low", "medium", "high", "critical", "HIGH", "informational")}
    assert verdicts == {"low": False, "medium": False, "high": True, "critical": True, "HIGH": True,
                        "informational": True}
    low = make_alert(severity="low")
    assert destination.accepts(DeliveryFailedMessage(low, "teams", "x"))
    assert destination.accepts(OverflowMessage("r", "n", "low", "t", 5, "a", "b"))
    assert destination.accepts(HealthMessage({}))


def test_next_attempt_delay_doubles_from_a_minute_up_to_an_hour():
    delays = [next_attempt_delay(n) for n in range(0, 12)]
    minutes = [d.total_seconds() / 60 for d in delays]
    assert minutes[:8] == [1, 1, 2, 4, 8, 16, 32, 60]
    assert set(minutes[7:]) == {60}
    assert next_attempt_delay(10**6) == timedelta(hours=1)
    jittered = {next_attempt_delay(3, random=lambda v=v: v) for v in (0.0, 0.5, 0.999)}
    assert min(jittered) == timedelta(minutes=4 * 0.8) and max(jittered) < timedelta(minutes=4 * 1.2)


def test_retry_after_parsing(fake_time):
    now = fake_time.now
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after(" 1.5 ", now) == 1.5
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now) == 0.0
    assert parse_retry_after("-4", now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None
