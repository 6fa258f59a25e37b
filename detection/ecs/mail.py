"""email.* and the alert `Data` blob: message ids, senders, recipients, subjects and attachments.

Exchange, Defender for Office 365 and alert records spread the same mail facts over different keys;
Elastic gathers them into ECS email.* (and related.*), which is reproduced here key by key.
"""

from __future__ import annotations

import re
from typing import Any

from detection.ecs import tables as t
from detection.ecs.addresses import valid_ip
from detection.ecs.doc import append_unique, clone, nonempty, sub, text
from detection.ecs.values import iso_utc, parse_json

# Alert `Data` and `Actions` text carry a second, AM/PM-formatted QueryTime that collides with the ISO one.
QUERY_TIME_AMPM = re.compile(
    r',"QueryTime":"[0-9/]+\s[0-9]+:[0-9]+:[0-9]+\s[AP]M"|"QueryTime":"[0-9/]+\s[0-9]+:[0-9]+:[0-9]+\s[AP]M",'
)
_IDENTITY = re.compile(r'^-?Identity\s"?(.*?)"?$', re.M)


def from_parameters(a: dict[str, Any], doc: dict[str, Any]) -> None:
    """Cmdlet parameters: forwarding targets -> email.to, From -> email.from, -Identity -> message id."""
    params = a.get("Parameters")
    if params.__class__ is not dict:
        return
    raw_text = params.get("_raw")
    if raw_text.__class__ is str and not nonempty(a.get("NetworkMessageId")):
        m = _IDENTITY.search(raw_text)
        if m is not None:
            a["NetworkMessageId"] = m.group(1)
    addresses: list[str] = []
    for key in ("ForwardAsAttachmentTo", "ForwardTo", "RedirectTo"):
        value = params.get(key)
        if value.__class__ is str and value:
            for part in value.split(";"):
                part = part.strip()
                if part not in addresses:
                    addresses.append(part)
    if addresses:
        sub(sub(doc, "email"), "to")["address"] = addresses
    if nonempty(params.get("From")):
        sub(sub(doc, "email"), "from")["address"] = clone(params["From"])


def _add_address(doc: dict[str, Any], role: str, value: Any) -> None:
    """A rendered address once into email.<role>.address (role: to, sender)."""
    value = text(value)
    if value:
        addresses = sub(sub(doc, "email"), role).setdefault("address", [])
        if value not in addresses:
            addresses.append(value)


def from_record(a: dict[str, Any], doc: dict[str, Any]) -> None:
    """Top-level and Item message facts; recipients also come from the DLP destination list."""
    item = a.get("Item")
    if item.__class__ is not dict:
        item = {}
    for value in (a.get("InternetMessageId"), item.get("InternetMessageId")):
        if nonempty(value):
            append_unique(doc, "email", "message_id", value)
    if nonempty(a.get("NetworkMessageId")):
        append_unique(doc, "email", "local_id", a["NetworkMessageId"])
    sender = doc.get("source", {}).get("user", {}).get("email")
    for value in (a.get("P1Sender"), sender):
        if nonempty(value):
            _add_address(doc, "sender", value)
    recipients = a.get("Recipients")
    if isinstance(recipients, list):
        for value in recipients:
            _add_address(doc, "to", value)
    dest = doc.get("destination", {}).get("user", {}).get("email")
    if isinstance(dest, list):
        for value in dest:
            _add_address(doc, "to", value)
    for key in ("SenderIp", "SenderIP"):
        if nonempty(a.get(key)):
            append_unique(doc, "related", "ip", a[key])
    for value in (a.get("Subject"), item.get("Subject")):
        if nonempty(value):
            append_unique(doc, "email", "subject", value)
    attachments = item.get("Attachments")
    if attachments.__class__ is str and attachments:
        sub(doc, "email")["attachments"] = _attachments(attachments)


def _attachments(listing: str) -> list[dict[str, Any]]:
    """`name.ext (123b); other.pdf (45b)` -> [{file: {extension, name, size}}]; odd entries are skipped."""
    out = []
    for part in listing.split(";"):
        part = part.strip()
        if not part.endswith(")"):
            continue
        sep = part.rfind(" (")
        size = part[sep + 2 : -1]
        if sep < 0 or not size.endswith("b"):
            continue
        try:
            size_value = int(size[:-1])
        except ValueError:
            continue
        name = part[:sep].strip()
        dot = name.rfind(".")
        if name and dot >= 0:
            out.append({"file": {"extension": name[dot + 1 :], "name": name, "size": size_value}})
    return out


def _one_at(value: Any) -> bool:
    return value.__class__ is str and value.count("@") == 1


def alert_data(a: dict[str, Any], doc: dict[str, Any]) -> None:
    """The alert `Data` blob (JSON text) -> o365.audit.Data.flattened plus its known keys, dates and users.

    Text that is not JSON stays as it was (Elastic drops it and marks the document as a pipeline error).
    """
    data = a["Data"]
    if data.__class__ is str:
        if a.get("RecordType") == "64":
            data = QUERY_TIME_AMPM.sub("", data)
        ok, data = parse_json(data)
        if not ok:
            return
    if data is None:
        del a["Data"]
        return
    out: dict[str, Any] = {"flattened": data}
    a["Data"] = out
    if data.__class__ is not dict:
        return
    for key in t.DATA_KEYS:
        if key in data:
            out[key] = clone(data[key])
    sip = out.get("sip")
    if sip is not None and sip != "" and not (sip.__class__ is str and valid_ip(sip)):
        del out["sip"]
    for key in t.DATA_DATE_KEYS:
        value = out.get(key)
        if value.__class__ is str:
            # te/ts also come as "yyyy-MM-dd HH:mm:ss'Z'", which the ISO reader takes as well.
            stamp = iso_utc(value)
            if stamp is not None:
                out[key] = stamp
    for key in ("f3u", "suid"):
        if _one_at(out.get(key)):
            append_unique(doc, "related", "user", out[key])
    if _one_at(out.get("f3u")) and not nonempty(doc.get("user", {}).get("email")):
        sub(doc, "user")["email"] = out["f3u"]
    if nonempty(out.get("tsd")):
        _add_address(doc, "sender", out["tsd"])
    if _one_at(out.get("tsd")):
        append_unique(doc, "related", "user", out["tsd"])
    if nonempty(out.get("trc")):
        _add_address(doc, "to", out["trc"])
    if _one_at(out.get("trc")):
        append_unique(doc, "related", "user", out["trc"])
    for key, target in (("aii", "local_id"), ("imsgid", "message_id"), ("ms", "subject")):
        if nonempty(out.get(key)):
            append_unique(doc, "email", target, out[key])
    entities = data.get("Entities")
    if isinstance(entities, list):
        _entities(a, doc, entities)


def _entities(a: dict[str, Any], doc: dict[str, Any], entities: list[Any]) -> None:
    """Mail entities of an alert -> email.*, related.*, and a few lists back under o365.audit."""
    found: dict[str, list[Any]] = {key: [] for key in t.ENTITY_KEYS}
    for entity in entities:
        if entity.__class__ is dict:
            for key in t.ENTITY_KEYS:
                if key in entity:
                    found[key].append(clone(entity[key]))
    for value in found["InternetMessageId"]:
        append_unique(doc, "email", "message_id", value)
    for value in found["NetworkMessageId"]:
        append_unique(doc, "email", "local_id", value)
    for value in found["P1Sender"]:
        _add_address(doc, "sender", value)
    for value in found["P2Sender"]:
        value = text(value)
        if value:
            sender = sub(sub(doc, "email"), "from")
            current = sender.get("address")
            values = current if isinstance(current, list) else ([] if current is None else [current])
            if value not in values:
                values.append(value)
            sender["address"] = values
    for value in found["Recipient"]:
        _add_address(doc, "to", value)
    if found["Recipient"] and not nonempty(doc.get("user", {}).get("email")):
        sub(doc, "user")["email"] = found["Recipient"]
    for value in found["SenderIP"]:
        append_unique(doc, "related", "ip", value)
    for value in found["Subject"]:
        append_unique(doc, "email", "subject", value)
    for value in found["Upn"]:
        append_unique(doc, "related", "user", value)
    for key in ("OriginalDeliveryLocation", "PhishConfidenceLevel"):
        if found[key]:
            a[key] = found[key]
    if found["ThreatDetectionMethods"]:
        flat: list[Any] = []
        for method in found["ThreatDetectionMethods"]:
            if isinstance(method, list):
                flat.extend(method)
            elif method.__class__ is str:
                flat.append(method)
        a["ThreatDetectionMethods"] = flat
