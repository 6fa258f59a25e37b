"""Azure Functions entry point (Python v2 model): bindings only; the work is in `detection`.

Settings and rules are validated when the worker imports this module: a bad setting or rule file
stops function indexing with its name in the log, and nothing is read from the Event Hub until it is
fixed.
The failure path of a batch (retry policy, dead letter, re-raise) is described in detection.hosting.
"""

from __future__ import annotations

import os
import typing

import azure.functions as func

from detection import hosting

RUNTIME = hosting.start(os.environ)

app = func.FunctionApp()


@app.function_name(name="detect")
@app.event_hub_message_trigger(
    arg_name="events",
    event_hub_name="%EVENTHUB_NAME%",
    connection="EventHubConnection",
    consumer_group="%EVENTHUB_CONSUMER_GROUP%",
    cardinality=func.Cardinality.MANY,
    data_type=func.DataType.BINARY,
)
@app.retry(
    strategy="exponential_backoff",
    max_retry_count=str(hosting.MAX_RETRIES),
    minimum_interval=hosting.RETRY_MIN_INTERVAL,
    maximum_interval=hosting.RETRY_MAX_INTERVAL,
)
# typing.List, not list[...]: the worker's binding check accepts only the typing form for "many".
def detect(events: typing.List[func.EventHubEvent], context: func.Context) -> None:  # noqa: UP006
    RUNTIME.batch(events, context)


@app.function_name(name="redeliver")
@app.timer_trigger(arg_name="timer", schedule="%REDELIVER_SCHEDULE%", run_on_startup=False,
                   use_monitor=True)
def redeliver(timer: func.TimerRequest) -> None:
    RUNTIME.redeliver()


@app.function_name(name="cleanup")
@app.timer_trigger(arg_name="timer", schedule=hosting.CLEANUP_SCHEDULE, run_on_startup=False,
                   use_monitor=True)
def cleanup(timer: func.TimerRequest) -> None:
    RUNTIME.cleanup()


@app.function_name(name="health")
@app.timer_trigger(arg_name="timer", schedule=RUNTIME.settings.health_schedule, run_on_startup=False,
                   use_monitor=True)
def health(timer: func.TimerRequest) -> None:
    RUNTIME.health()
