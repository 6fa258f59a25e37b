"""Management Activity API audit record -> ECS document, as Elastic's o365 integration maps it.

Rules written for Elastic (event.action, o365.audit.*, user.*, ...) must see the same values here, so the
mapping follows Elastic's ingest pipeline step by step: ECS fields are lifted out of the record and the
rest stays under `o365.audit.<OriginalName>` with Elastic's conversions. Where Elastic's 2021 Filebeat
module and today's integration disagree, the choice and its reason sit next to the code (workloads.py's
acting_user, the RecordType fallback below, the host:port order in addresses.py).

It runs on every candidate record, so it is straight-line code over precomputed tables: steps for keys
most records lack run only when `special` (the record's keys that need one) says so. It never raises on
odd input: a value of the wrong type is left where it was, under o365.audit, instead of being mapped.
"""

from __future__ import annotations

from typing import Any

from detection.ecs import mail
from detection.ecs import tables as t
from detection.ecs.addresses import parse_client, parse_server
from detection.ecs.doc import append_unique, clone, copy_record, extend_unique, nonempty, sub
from detection.ecs.values import integer_text, iso_utc, keyword_text, parse_json
from detection.ecs.verbatim import RawSource, verbatim_source
from detection.ecs.workloads import BY_CODE

__all__ = ["RawSource", "to_ecs", "verbatim_source"]

_RARE_INTEGER_TEXT = tuple(k for k in t.INTEGER_TEXT_KEYS if k not in ("RecordType", "Version"))
_RARE_STRING = tuple(k for k in t.STRING_KEYS if k not in ("RecordType", "UserType", "Version"))
_FILE_COPIES = (
    ("FileExtension", "extension"),
    ("FilePath", "path"),
    ("FileSizeBytes", "size"),
)
_FILE_FALLBACKS = (("TargetFilePath", "path"), ("FileSize", "size"))
_MAIL_KEYS = frozenset(
    {
        "InternetMessageId",
        "Item",
        "NetworkMessageId",
        "P1Sender",
        "Recipients",
        "SenderIp",
        "SenderIP",
        "Subject",
    }
)
# Keys that trigger a step most records skip.
_SPECIAL = frozenset(
    {
        *_RARE_INTEGER_TEXT, *_RARE_STRING, *(k for k, _ in _FILE_COPIES), *(k for k, _ in _FILE_FALLBACKS),
        "Sender", "Message", "Sha1", "Sha256", "Application", "OriginatingDomain", "Actions",
        "AdditionalInfo", "OperationProperties", "Parameters", "Platform", "ExtendedProperties",
        "ModifiedProperties", "AlertLinks", "Severity", "Actor", "Target", *_MAIL_KEYS, *t.DATE_KEYS,
        "RescanResult", "Data", "AppAccessContext", "ApplicationDisplayName", "DeviceName",
    }
)  # fmt: skip
_CLIENT_KEYS = ("ClientIPAddress", "ClientIP", "ActorIpAddress")
_OS_TYPES = (
    ("windows", "windows"),
    ("linux", "linux"),
    ("mac", "macos"),
    ("unix", "unix"),
    ("ios", "ios"),
    ("android", "android"),
)


def to_ecs(raw: dict[str, Any], event_time: str | None = None) -> dict[str, Any]:
    """Map one audit record to a new nested ECS document; `event_time` (Defender's Timestamp) wins."""
    if raw.__class__ is not dict and not isinstance(raw, dict):
        raw = {}
    a = copy_record(raw)
    special = a.keys() & _SPECIAL
    categories = ["web"]
    types = ["info"]
    event: dict[str, Any] = {
        "kind": "event",
        "module": "o365",
        "dataset": "o365.audit",
        "category": categories,
        "type": types,
    }
    doc: dict[str, Any] = {
        "ecs": {"version": "8.11.0"},
        "data_stream": {"dataset": "o365.audit"},
        "event": event,
    }

    record_type = a.get("RecordType")
    if record_type is not None:
        a["RecordType"] = record_type = integer_text(record_type)
    if a.get("Version") is not None:
        a["Version"] = integer_text(a["Version"])
    if special:
        _early(a, doc, special)

    stamp = iso_utc(event_time) if event_time is not None else None
    if stamp is None:
        stamp = iso_utc(a.get("CreationTime"))
    if stamp is not None:
        doc["@timestamp"] = stamp

    if a.get("Id").__class__ is str:
        event["id"] = a.pop("Id")
    client_text = None
    for key in _CLIENT_KEYS:
        if a.get(key).__class__ is str:
            client_text = a.pop(key)
            break
    user_id = a.get("UserId")
    if user_id.__class__ is str:
        doc["user"] = {"id": user_id}
    elif isinstance(user_id, int | float) and not isinstance(user_id, bool):
        doc["user"] = {"id": keyword_text(user_id)}
    if a.get("Workload").__class__ is str:
        event["provider"] = a.pop("Workload")
    operation = a.get("Operation")
    if operation.__class__ is str:
        del a["Operation"]
        event["action"] = t.ACTION_RENAMES.get(operation, operation)
    org_id = a.get("OrganizationId")
    if org_id.__class__ is str:
        del a["OrganizationId"]
        doc["organization"] = {"id": org_id.lower()}
    if special:
        for key in ("AdditionalInfo", "OperationProperties"):
            if key in special and a[key].__class__ is str:
                ok, parsed = parse_json(a[key])
                if ok:  # text that is not JSON stays (Elastic would drop it)
                    a[key] = parsed
    if a.get("UserAgent").__class__ is str:
        doc["user_agent"] = {"original": a.pop("UserAgent")}

    code = t.RECORD_TYPES.get(record_type) if record_type.__class__ is str else None
    if code is not None:
        event["code"] = code
    else:
        # A type with no name keeps its number (as Filebeat did) so event.code never silently disappears.
        original = raw.get("RecordType")
        if original.__class__ in (str, int):
            event["code"] = original
    status = a.get("ResultStatus")
    event["outcome"] = t.OUTCOMES.get(status.lower(), "success") if status.__class__ is str else "success"

    if special:
        _structured(a, doc, event, special)
    server_text = None
    if code is not None:
        handler = BY_CODE.get(code)
        if handler is not None:
            server_text = handler(a, doc, event)
    action = event.get("action")
    if action is not None:
        _action_extras(code, action, categories, types)

    if client_text:
        _client(doc, client_text)
    if server_text:
        _server(doc, server_text)
    _split_users(doc)
    _related(a, doc)
    ext = a.get("ExtendedProperties")
    if ext.__class__ is dict and ext.get("UserAgent") is not None and "user_agent" not in doc:
        doc["user_agent"] = {"original": ext.pop("UserAgent")}
    organization = doc.get("organization")
    if organization is not None and "id" in organization:
        sub(doc, "host")["id"] = organization["id"]
    _host_name(a, doc)

    if a.get("UserType") is not None:
        a["UserType"] = keyword_text(a["UserType"])
    if special:
        _keyword_texts(a, special)
    if not special.isdisjoint(_MAIL_KEYS) or "NetworkMessageId" in a or _has_mail_parties(doc):
        mail.from_record(a, doc)
    if special:
        _late(a, doc, special)
    if record_type == "50":
        types.append("access")
        categories.append("email")
        if a.get("Messages") is not None:
            a["ExchangeAggregatedMessages"] = a.pop("Messages")
        if a.get("Folders") is not None:
            a["ExchangeAggregatedFolders"] = a.pop("Folders")
    doc["o365"] = {"audit": a}
    _related_tail(doc)
    return doc


def _early(a: dict[str, Any], doc: dict[str, Any], special: set[str]) -> None:
    """Number-to-text rewrites, object renames and the file/process copies Elastic makes first."""
    for key in _RARE_INTEGER_TEXT:
        if key in special and a[key] is not None:
            a[key] = integer_text(a[key])
    if "Sender" in special and a["Sender"].__class__ is dict:
        a["SenderEntity"] = a.pop("Sender")
    if "Message" in special and a["Message"].__class__ is dict:
        a["MessageObject"] = a.pop("Message")
    file: dict[str, Any] = {}
    for key, target in _FILE_COPIES:
        if key in special and nonempty(a[key]):
            file[target] = clone(a[key])
    for key, target in _FILE_FALLBACKS:
        if key in special and nonempty(a[key]) and target not in file:
            file[target] = clone(a[key])
    for key, target in (("Sha1", "sha1"), ("Sha256", "sha256")):
        if key in special and nonempty(a[key]):
            sub(file, "hash")[target] = clone(a[key])
    if file:
        doc["file"] = file
    if "Application" in special and nonempty(a["Application"]):
        doc["process"] = {"name": clone(a["Application"])}
    if "OriginatingDomain" in special and nonempty(a["OriginatingDomain"]):
        doc["url"] = {"domain": clone(a["OriginatingDomain"])}
    if "Actions" in special and a["Actions"] is not None:
        _actions(a)


def _actions(a: dict[str, Any]) -> None:
    """Actions mixes objects and JSON text; Elastic keeps the objects and appends the parsed text."""
    actions = a["Actions"]
    if not isinstance(actions, list):
        actions = a["Actions"] = [actions]
    objects = [x for x in actions if x.__class__ is dict]
    if len(objects) == len(actions):
        return
    parsed = []
    for x in actions:
        if x.__class__ is str:
            ok, value = parse_json(mail.QUERY_TIME_AMPM.sub("", x))
            parsed.append(value if ok else x)
    a["Actions"] = objects + parsed


def _pairs_to_map(items: list[Any]) -> dict[str, Any]:
    """[{Name, Value}, ...] -> {Name: Value}, skipping entries without a value or a usable name."""
    out: dict[str, Any] = {}
    for item in items:
        if item.__class__ is dict and item.get("Value") is not None:
            name = item.get("Name")
            if name.__class__ is str:
                out[name] = item["Value"]
            elif isinstance(name, int | float) and not isinstance(name, bool):
                out[keyword_text(name)] = item["Value"]
    return out


def _modified_properties(items: list[Any]) -> dict[str, Any]:
    """[{Name, NewValue, OldValue}] -> {Name_with_underscores_for_dots_and_spaces: {NewValue, OldValue}}.

    Entries missing either value are dropped; a bare string entry becomes an empty object, as in Elastic.
    """
    out: dict[str, Any] = {}
    for item in items:
        if item.__class__ is dict:
            name = item.get("Name")
            if (
                name.__class__ is str
                and item.get("OldValue") is not None
                and item.get("NewValue") is not None
            ):
                out[name.replace(" ", "_").replace(".", "_")] = {
                    "NewValue": item["NewValue"],
                    "OldValue": item["OldValue"],
                }
        elif item.__class__ is str:
            out[item.replace(" ", "_").replace(".", "_")] = {}
    return out


def _structured(a: dict[str, Any], doc: dict[str, Any], event: dict[str, Any], special: set[str]) -> None:
    """Name/Value lists to maps (cmdlet text kept under `_raw`), platform, alert links and severity."""
    if "Parameters" in special:
        _name_value_map(a, "Parameters")
        mail.from_parameters(a, doc)
    if "Platform" in special:
        _platform(a, doc)
    if "ExtendedProperties" in special:
        _name_value_map(a, "ExtendedProperties")
    if "ModifiedProperties" in special:
        mods = a["ModifiedProperties"]
        if isinstance(mods, list):
            converted = _modified_properties(mods)
            if converted:
                a["ModifiedProperties"] = converted
            else:
                del a["ModifiedProperties"]
        elif mods.__class__ is str:
            a["ModifiedProperties"] = {"_raw": mods}
    if "AlertLinks" in special and isinstance(a["AlertLinks"], list):
        hrefs = [
            x["AlertLinkHref"]
            for x in a["AlertLinks"]
            if x.__class__ is dict and x.get("AlertLinkHref").__class__ is str
        ]
        if hrefs:
            a["AlertLinks"] = hrefs
        else:
            del a["AlertLinks"]
    if "Severity" in special:
        severity = a["Severity"]
        if severity.__class__ is str and severity in t.SEVERITIES:
            event["severity"] = t.SEVERITIES[severity]


def _name_value_map(a: dict[str, Any], key: str) -> None:
    """Name/Value lists become maps; a string (cmdlet-style text) is kept whole under `_raw`."""
    value = a[key]
    if isinstance(value, list):
        a[key] = _pairs_to_map(value)
    elif value.__class__ is str:
        a[key] = {"_raw": value}


def _platform(a: dict[str, Any], doc: dict[str, Any]) -> None:
    """Platform numbers -> names, then host.os.type/platform from the name."""
    value = a["Platform"]
    if value is None:
        return
    if not isinstance(value, dict | list):
        name = t.PLATFORMS.get(keyword_text(value))
        if name is not None:
            a["Platform"] = value = name
    if value.__class__ is not str or not value:
        return
    os_node = {"platform": value}
    lowered = value.lower()
    for needle, os_type in _OS_TYPES:
        if needle in lowered:
            os_node["type"] = os_type
            break
    sub(doc, "host")["os"] = os_node


def _action_extras(code: str | None, action: Any, categories: list[str], types: list[str]) -> None:
    """The categories and types Elastic appends for an operation (generic, per workload, Yammer)."""
    for extra in (
        t.ACTION_EXTRAS.get(action),
        t.CODE_ACTION_EXTRAS.get((code, action)) if code is not None else None,
        t.YAMMER_EXTRAS.get(action) if code == "Yammer" else None,
    ):
        if extra is not None:
            categories.extend(extra[0])
            types.extend(extra[1])


def _client(doc: dict[str, Any], client_text: str) -> None:
    client = parse_client(client_text)
    if not client:
        return
    doc["client"] = client
    ip = client.get("ip")
    if ip is not None:
        sub(doc, "source")["ip"] = ip
        doc["network"] = {"type": "ipv6" if ":" in ip else "ipv4"}  # type: ignore[operator]
        append_unique(doc, "related", "ip", ip)
    if "port" in client:
        sub(doc, "source")["port"] = client["port"]


def _server(doc: dict[str, Any], server_text: str) -> None:
    server = parse_server(server_text)
    doc["server"] = server
    if "ip" in server:
        sub(doc, "destination")["ip"] = server["ip"]
        append_unique(doc, "related", "ip", server["ip"])


def _split_mail(node: Any) -> None:
    """id `name@domain` -> email/name/domain; ids with no or several @ are left alone."""
    if node.__class__ is not dict:
        return
    uid = node.get("id")
    if uid.__class__ is str and "@" in uid:
        parts = uid.split("@")
        if len(parts) == 2:
            node["email"] = uid
            node["domain"] = parts[1]
            node["name"] = parts[0]


def _split_users(doc: dict[str, Any]) -> None:
    user = doc.get("user")
    if user is not None:
        _split_mail(user)
        _split_mail(user.get("target"))
    for group in ("source", "destination"):
        node = doc.get(group)
        if node is not None:
            _split_mail(node.get("user"))


def _related(a: dict[str, Any], doc: dict[str, Any]) -> None:
    """related.user from the user's and target's names, the file owner and a cmdlet's -User."""
    user = doc.get("user") or {}
    target = user.get("target")
    params = a.get("Parameters")
    extend_unique(doc, "related", "user", [
        user.get("name"),
        target.get("name") if target.__class__ is dict else None,
        doc.get("file", {}).get("owner"),
        params.get("User") if params.__class__ is dict else None,
    ])  # fmt: skip


def _host_name(a: dict[str, Any], doc: dict[str, Any]) -> None:
    host = doc.get("host")
    if host is not None and "name" in host:
        return
    name = a.get("DeviceName")
    if name is None:
        name = doc.get("organization", {}).get("name")
    if name is None:
        name = doc.get("user", {}).get("domain")
    if name is not None:
        sub(doc, "host")["name"] = clone(name)


def _keyword_texts(a: dict[str, Any], special: set[str]) -> None:
    """Ids and actor/target types Elastic indexes as keywords: numbers become their text."""
    for key in _RARE_STRING:
        if key in special and a[key] is not None:
            a[key] = keyword_text(a[key])
    for key in ("Actor", "Target"):
        if key in special and isinstance(a[key], list):
            for item in a[key]:
                if item.__class__ is dict and item.get("Type") is not None:
                    item["Type"] = keyword_text(item["Type"])


def _has_mail_parties(doc: dict[str, Any]) -> bool:
    """Whether DLP left a sender or recipients for email.*."""
    source, destination = doc.get("source"), doc.get("destination")
    return (source is not None and "user" in source) or (destination is not None and "user" in destination)


def _late(a: dict[str, Any], doc: dict[str, Any], special: set[str]) -> None:
    """Dates, the alert blob and the access context."""
    for key in t.DATE_KEYS:
        if key in special:
            stamp = iso_utc(a[key])
            if stamp is not None:
                a[key] = stamp
    if "RescanResult" in special and a["RescanResult"].__class__ is dict:
        stamp = iso_utc(a["RescanResult"].get("Timestamp"))
        if stamp is not None:
            a["RescanResult"]["Timestamp"] = stamp
    if "Data" in special:
        mail.alert_data(a, doc)
    _access_context(a, doc, special)


def _access_context(a: dict[str, Any], doc: dict[str, Any], special: set[str]) -> None:
    """Device, session, token and application identifiers."""
    ctx = a.get("AppAccessContext") if "AppAccessContext" in special else None
    if ctx.__class__ is not dict:
        ctx = None
    if ctx is not None and nonempty(ctx.get("DeviceId")):
        doc["device"] = {"id": clone(ctx["DeviceId"])}
    ext = a.get("ExtendedProperties")
    if ext.__class__ is dict:
        details = ext.get("additionalDetails")
        if details.__class__ is str:
            ok, parsed = parse_json(details)
            if ok:
                ext["additionalDetails"] = details = parsed
        if details.__class__ is dict:
            if nonempty(details.get("DeviceId")) and "device" not in doc:
                doc["device"] = {"id": clone(details["DeviceId"])}
            agent = details.get("User-Agent")
            if agent.__class__ is str and agent and "user_agent" not in doc:
                doc["user_agent"] = {"original": agent}
    if ctx is not None:
        if nonempty(ctx.get("AADSessionId")):
            doc["session"] = {"id": clone(ctx["AADSessionId"])}
        if nonempty(ctx.get("UniqueTokenId")):
            doc["token"] = {"id": clone(ctx["UniqueTokenId"])}
    if "ApplicationDisplayName" in special and nonempty(a["ApplicationDisplayName"]):
        doc["application"] = {"name": clone(a["ApplicationDisplayName"])}


def _related_tail(doc: dict[str, Any]) -> None:
    """The identity, host and hash cross-references Elastic appends last."""
    user = doc.get("user")
    target = user.get("target") if user is not None else None
    if target.__class__ is not dict:
        target = None
    hosts = []
    host = doc.get("host")
    if host is not None:
        hosts.append(host.get("name"))
        if host.get("hostname") != host.get("name"):
            hosts.append(host.get("hostname"))
    if user is not None:
        users = [user.get("id")]
        if target is not None:
            users += (target.get("id"), target.get("email"))
        users.append(user.get("email"))
        extend_unique(doc, "related", "user", users)
        hosts.append(user.get("domain"))
        if target is not None and target.get("domain") != user.get("domain"):
            hosts.append(target.get("domain"))
    for group in ("source", "destination", "url", "server", "client"):
        node = doc.get(group)
        if node is not None:
            hosts.append(node.get("domain"))
    extend_unique(doc, "related", "hosts", hosts)
    hashes = doc.get("file", {}).get("hash")
    if hashes is not None:
        extend_unique(doc, "related", "hash", [hashes.get(k) for k in ("md5", "sha1", "sha256", "sha512")])
