"""The per-RecordType steps of Elastic's o365 mapping (Exchange, Azure AD, SharePoint, DLP, alerts, ...).

Each handler gets the record being rewritten (`a`, becomes o365.audit), the document and its `event`
node, and moves or copies the workload's own fields. A handler may return the Exchange server text for
the address step. Handlers only run for their event.code, so most records pay for one dict lookup.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from detection.ecs import tables as t
from detection.ecs.doc import clone, move, nonempty, sub
from detection.ecs.values import iso_utc, keyword_text

Handler = Callable[[dict[str, Any], dict[str, Any], dict[str, Any]], Any]


def _lift(a: dict[str, Any], doc: dict[str, Any], fields: tuple[tuple[str, str, str], ...]) -> None:
    """Elastic's renames into ECS: each present (non-null) `key` leaves `a` for doc.<group>.<target>."""
    for key, group, target in fields:
        if a.get(key) is not None:
            node = doc
            for part in group.split("."):
                node = sub(node, part)
            node[target] = a.pop(key)


def _fallback_user_id(doc: dict[str, Any], value: Any) -> None:
    """A workload's own user id, used only when the record has no UserId."""
    if "id" not in doc.get("user", ()) and nonempty(value):
        sub(doc, "user")["id"] = keyword_text(clone(value))


def _take_server(a: dict[str, Any]) -> str | None:
    """OriginatingServer text leaves the record for server.*; other types stay where they are."""
    return a.pop("OriginatingServer") if a.get("OriginatingServer").__class__ is str else None


def _organization_name(a: dict[str, Any], doc: dict[str, Any]) -> None:
    if a.get("OrganizationName") is not None:
        sub(doc, "organization")["name"] = a.pop("OrganizationName")


def exchange_admin(a: dict[str, Any], doc: dict[str, Any], event: dict[str, Any]) -> str | None:
    _organization_name(a, doc)
    return _take_server(a)


_EXCHANGE_ITEM_FIELDS = (("MailboxOwnerUPN", "user", "email"), ("LogonUserDisplayName", "user", "full_name"))


def exchange_item(a: dict[str, Any], doc: dict[str, Any], event: dict[str, Any]) -> str | None:
    event["category"].append("email")
    _lift(a, doc, _EXCHANGE_ITEM_FIELDS[:1])
    _fallback_user_id(doc, a.get("LogonUserSid"))
    _lift(a, doc, _EXCHANGE_ITEM_FIELDS[1:])
    _organization_name(a, doc)
    if a.get("ClientProcessName") is not None and "name" not in doc.get("process", ()):
        sub(doc, "process")["name"] = a.pop("ClientProcessName")
    return _take_server(a)


def azure_ad(a: dict[str, Any], doc: dict[str, Any], event: dict[str, Any]) -> None:
    if "ObjectId" in a:
        sub(sub(doc, "user"), "target")["id"] = clone(a["ObjectId"])


def sts_logon(a: dict[str, Any], doc: dict[str, Any], event: dict[str, Any]) -> None:
    event["category"].append("authentication")
    event["type"].extend(("start", "access"))


_SHAREPOINT_FILE_FIELDS = (
    ("ObjectId", "url", "original"),
    ("SourceRelativeUrl", "file", "directory"),
    ("SourceFileName", "file", "name"),
    ("SourceFileExtension", "file", "extension"),
)


def sharepoint_file(a: dict[str, Any], doc: dict[str, Any], event: dict[str, Any]) -> None:
    _lift(a, doc, _SHAREPOINT_FILE_FIELDS)


def acting_user(doc: dict[str, Any], value: Any) -> None:
    """DLP and user-entity alerts name the person in their own field; their UserId is a service account.

    Elastic's pipeline fills user.id from these fields only when UserId is missing, which does not happen,
    so its documents name "DlpAgent" or "SecurityComplianceAlerts". Filebeat named the person, and so do
    we; the service account stays in o365.audit.UserId.
    """
    if value.__class__ is str and value:
        sub(doc, "user")["id"] = value


_ALERT_RULE_FIELDS = (
    ("Name", "name"),
    ("PolicyId", "id"),
    ("Category", "category"),
    ("EntityType", "ruleset"),
    ("AlertEntityId", "description"),
    ("AlertLinks", "reference"),
)


def security_alerts(a: dict[str, Any], doc: dict[str, Any], event: dict[str, Any]) -> None:
    # Elastic renames Category and AlertEntityId before its category and user steps test them, so those
    # steps never fire; what takes effect is the message, the rule.* renames and the alert kind.
    if a.get("Name") is not None:
        doc["message"] = clone(a["Name"])
    if a.get("EntityType") == "User":
        acting_user(doc, a.get("AlertEntityId"))
    rule: dict[str, Any] = {}
    for key, target in _ALERT_RULE_FIELDS:
        move(a, key, rule, target)
    if rule:
        doc["rule"] = rule
    event["kind"] = "alert"


_SHAREPOINT_META_FIELDS = (
    ("FileName", "file", "name"),
    ("FilePathUrl", "url", "original"),
    ("UniqueId", "file", "inode"),
    ("UniqueID", "file", "inode"),
    ("FileOwner", "file", "owner"),
)


def dlp(a: dict[str, Any], doc: dict[str, Any], event: dict[str, Any]) -> None:
    ex = a.get("ExchangeMetaData")
    if event.get("code") == "ComplianceDLPExchange":
        doc["message"] = _dlp_message(event, doc, ex)
    event["kind"] = "alert"
    event["category"].append("file")
    event["type"].append("access")
    sp = a.get("SharePointMetaData")
    if sp.__class__ is dict:
        acting_user(doc, sp.get("From"))
        _lift(sp, doc, _SHAREPOINT_META_FIELDS)
    if ex.__class__ is dict and ex.get("From") is not None:
        sub(sub(doc, "source"), "user")["email"] = ex.pop("From")
    rule: dict[str, Any] = {}
    move(a, "PolicyId", rule, "id")
    move(a, "PolicyName", rule, "name")
    if sp.__class__ is dict:
        stamp = iso_utc(sp.get("LastModifiedTime"))
        if stamp is not None:
            sub(doc, "file")["mtime"] = stamp
    if ex is not None:
        emails: list[Any] = []
        if ex.__class__ is dict:
            for key in ("To", "CC", "BCC"):
                value = ex.get(key)
                if isinstance(value, list):
                    emails.extend(clone(value))
                elif value.__class__ is str:
                    emails.append(value)
        sub(sub(doc, "destination"), "user")["email"] = emails
    if a.get("ExceptionInfo").__class__ is str:
        a["ExceptionInfo"] = {"Reason": a["ExceptionInfo"]}
    if a.get("PolicyDetails") is not None:
        _dlp_policies(a, event, rule)
    if rule:
        doc["rule"] = rule


def _dlp_message(event: dict[str, Any], doc: dict[str, Any], ex: Any) -> str:
    subject = ex.get("Subject") if ex.__class__ is dict else None
    action = event.get("action") or ""
    uid = doc.get("user", {}).get("id") or ""
    subject = subject if subject.__class__ is str else ""
    if action.__class__ is str and uid.__class__ is str and (action or uid or subject):
        return f"Office365 Alert: {action} detected in email sent by {uid} with subject '{subject}'"
    return "Office365 Alert"


def _dlp_policies(a: dict[str, Any], event: dict[str, Any], rule: dict[str, Any]) -> None:
    """Rule ids/names, the highest rule severity and the outcome (blocked unless undone or excepted)."""
    ids = _as_list(rule, "id")
    names = _as_list(rule, "name")
    max_severity, allowed = 0, True
    policies = a["PolicyDetails"]
    for policy in policies if isinstance(policies, list) else ():
        rules = policy.get("Rules") if policy.__class__ is dict else None
        for item in rules if isinstance(rules, list) else ():
            if item.__class__ is not dict:
                continue
            if item.get("RuleId") is not None and item.get("RuleName") is not None:
                ids.append(clone(item["RuleId"]))
                names.append(clone(item["RuleName"]))
            sev = item.get("Severity")
            if sev.__class__ is str:
                max_severity = max(max_severity, t.SEVERITIES.get(sev.lower(), 0))
            actions = item.get("Actions")
            if allowed and isinstance(actions, list | str) and "BlockAccess" in actions:
                allowed = False
    rule["id"], rule["name"] = ids, names
    event["severity"] = max_severity
    exception = a.get("ExceptionInfo")
    if allowed or event.get("action") == "DlpRuleUndo":
        event["outcome"] = "success"
    elif event.get("action") == "DlpInfo":
        event["outcome"] = "failure"
    elif isinstance(exception, dict | str | list) and exception:
        event["outcome"] = "success"
    else:
        event["outcome"] = "failure"


def _as_list(node: dict[str, Any], key: str) -> list[Any]:
    value = node.get(key)
    if isinstance(value, list):
        return value
    return [] if value is None else [value]


_YAMMER_FIELDS = (
    ("FileId", "file", "inode"),
    ("FileName", "file", "name"),
    ("GroupName", "group", "name"),
    ("TargetUserId", "destination.user", "email"),
    ("TargetYammerUserId", "destination.user", "id"),
)


def yammer(a: dict[str, Any], doc: dict[str, Any], event: dict[str, Any]) -> None:
    _lift(a, doc, (("ActorUserId", "user", "email"),))
    _fallback_user_id(doc, a.get("ActorYammerUserId"))
    _lift(a, doc, _YAMMER_FIELDS)


def teams(a: dict[str, Any], doc: dict[str, Any], event: dict[str, Any]) -> None:
    _lift(a, doc, (("TeamName", "group", "name"),))
    if event.get("action") == "deleted-user-account" and a.get("ObjectId") is not None:
        sub(sub(doc, "user"), "target")["id"] = a.pop("ObjectId")
    members = a.get("Members")
    if isinstance(members, list):
        related = sub(doc, "related").setdefault("user", [])
        for member in members:
            if member.__class__ is dict:
                upn = member.get("UPN")
                if upn.__class__ is str and upn:
                    related.append(upn)


BY_CODE: dict[str, Handler] = {
    "ExchangeAdmin": exchange_admin,
    "ExchangeItem": exchange_item,
    "AzureActiveDirectory": azure_ad,
    "AzureActiveDirectoryStsLogon": sts_logon,
    "SharePointFileOperation": sharepoint_file,
    "SharePointSharingOperation": sharepoint_file,
    "SecurityComplianceAlerts": security_alerts,
    "ComplianceDLPSharePoint": dlp,
    "ComplianceDLPExchange": dlp,
    "Yammer": yammer,
    "MicrosoftTeams": teams,
}
