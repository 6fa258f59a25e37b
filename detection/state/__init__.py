"""Alert state in Azure Table Storage: idempotent alerts, suppression in event time, the delivery ledger.

`tables` is the only module that talks to the service; `lifecycle` holds the pure decisions; `store`
knows the entity layout; `delivery` moves one alert or notice forward; `outbox` finishes what is owed.
"""
