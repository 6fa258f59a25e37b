"""A deterministic, tenant-like stream of Microsoft 365 audit records packed into Event Hub bodies.

Used by the benchmark and to build sample data. Realism matters more than variety here, because the
cost of a stream is decided by what its bodies look like: the workload mix of a real tenant (mostly
Exchange, SharePoint/OneDrive and Entra ID, some Teams, about one record in a thousand a Teams tenant
setting change), record shapes as the Management Activity API writes them (Exchange folder paths full of
backslashes, SharePoint URLs, sign-ins with ExtendedProperties), and bodies packed the way producers do
it: content blobs of one content type as JSON arrays, NDJSON, Azure Monitor `{"records": [...]}`
envelopes, Defender XDR envelopes (RawEventData as an object or as a JSON string), gzip, and
serialisers that escape non-ASCII characters or `/`.

Everything is a pure function of (count, seed).
"""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

SEED_RULE_SETTING = "Allow sideloading and interaction of custom apps"
OTHER_TEAMS_SETTINGS = (
    "Allow guest access in Teams", "Allow external apps in Microsoft Teams", "Side loading of Bots",
    "Allow new external apps by default", "Allow email integration", "Allow Skype users to communicate",
)
FIRST = ("alex", "megan", "diego", "isaiah", "lynne", "nestor", "patti", "pradeep", "adele", "grady",
         "joni", "lee", "miriam", "johanna", "henrietta", "irvin", "jose", "zoe", "bjorn", "noemie")
LAST = ("wilber", "bowen", "siciliani", "langer", "robbins", "wilke", "fernandez", "gupta", "vance",
        "archie", "sherman", "gu", "graham", "lauer", "mueller", "sneed", "garcia", "obrien", "lund")
# Display names with the characters serialisers like to escape (non-ASCII, apostrophes).
DISPLAY_EXTRA = ("José García", "Zoë O'Brien", "Björn Lund", "Noémie Dupré", "Jürgen Müller")
FOLDERS = ("\\Inbox", "\\Sent Items", "\\Deleted Items", "\\Drafts", "\\Archive", "\\Inbox\\updates",
           "\\Inbox\\Projects\\Q4 planning", "\\Calendar", "\\Contacts", "\\Inbox\\unread-later",
           "\\Recoverable Items\\Deletions", "\\Archive\\2025\\urgent", "\\Notes", "\\Tasks")
FILE_EXT = ("docx", "xlsx", "pptx", "pdf", "png", "txt", "one", "csv", "mp4", "zip")
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 "
    "Safari/537.36 Edg/130.0.0.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 "
    "Safari/605.1.15",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17928; Pro)",
    "OneDriveMpc-Transform_Thumbnail/1.0",
    "Microsoft SkyDriveSync 24.201.1006.0005 ship; Windows NT 10.0 (19045)",
)
EXCHANGE_HOST = "AM6PR01MB1234.eurprd01.prod.exchangelabs.com"
CONTENT_TYPES = ("Audit.Exchange", "Audit.SharePoint", "Audit.AzureActiveDirectory", "Audit.General")


@dataclass(frozen=True)
class Body:
    """One generated Event Hub body: how it was packed, its bytes, and how many records it carries."""

    kind: str
    data: bytes
    records: int


class _Tenant:
    """Stable identities of one fictitious tenant, drawn once from the seed."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.org = self.uuid()
        self.domain = "contoso.onmicrosoft.com"
        self.users = [f"{rng.choice(FIRST)}.{rng.choice(LAST)}{i}@{self.domain}" for i in range(300)]
        self.admins = self.users[:4]
        self.user_keys = {u: f"1003{rng.getrandbits(48):012X}" for u in self.users}
        self.object_ids = {u: self.uuid() for u in self.users}
        self.sites = [f"https://contoso.sharepoint.com/sites/{name}" for name in
                      ("Finance", "Marketing", "Engineering", "HR", "Legal", "ProjectX", "Sales-EMEA")]
        self.mailbox_guids = {u: self.uuid() for u in self.users}
        self.ips = [f"203.0.113.{rng.randrange(1, 255)}" for _ in range(40)] + \
                   [f"198.51.100.{rng.randrange(1, 255)}" for _ in range(40)] + \
                   [f"2001:db8:{rng.randrange(0x10000):x}::{rng.randrange(0x10000):x}" for _ in range(10)]

    def uuid(self) -> str:
        h = f"{self.rng.getrandbits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def user(self) -> str:
        # Activity is skewed: a few people make most of it.
        return self.users[min(int(self.rng.expovariate(1 / 40)), len(self.users) - 1)]


def _base(t: _Tenant, when: datetime, record_type: int, workload: str, operation: str, user: str,
          **fields: Any) -> dict[str, Any]:
    record = {
        "CreationTime": when.strftime("%Y-%m-%dT%H:%M:%S"),
        "Id": t.uuid(),
        "Operation": operation,
        "OrganizationId": t.org,
        "RecordType": record_type,
        "ResultStatus": "Succeeded",
        "UserKey": t.user_keys.get(user, user),
        "UserType": 0,
        "Version": 1,
        "Workload": workload,
        "UserId": user,
    }
    record.update(fields)
    return record


def exchange_item(t: _Tenant, when: datetime) -> dict[str, Any]:
    rng = t.rng
    user = t.user()
    operation = rng.choices(("MailItemsAccessed", "Send", "MoveToDeletedItems", "SoftDelete", "Update",
                             "HardDelete", "Create", "FolderBind"), (50, 10, 10, 6, 10, 3, 8, 3))[0]
    ip = rng.choice(t.ips)
    fields: dict[str, Any] = {
        "ClientIPAddress": ip, "ClientIP": ip, "MailboxGuid": t.mailbox_guids[user],
        "MailboxOwnerUPN": user, "MailboxOwnerSid": f"S-1-5-21-{rng.getrandbits(31)}-{rng.getrandbits(31)}",
        "LogonType": 0, "InternalLogonType": 0, "ExternalAccess": False,
        "ClientInfoString": rng.choice(("Client=OWA;Action=ViaProxy", "Client=MSExchangeRPC",
                                        "Client=REST;Client=RESTSystem;;")),
        "OriginatingServer":
            f"AM6PR01MB{rng.randrange(1000, 9999)} (15.20.{rng.randrange(1000, 9999)}.010)\r\n",
        "OrganizationName": t.domain, "LogonUserSid": f"S-1-5-21-{rng.getrandbits(31)}",
    }
    if operation == "MailItemsAccessed":
        fields["OperationProperties"] = [{"Name": "MailAccessType", "Value": "Bind"},
                                         {"Name": "IsThrottled", "Value": "False"}]
        fields["Folders"] = [{
            "FolderItems": [
                {"InternetMessageId": f"<{rng.getrandbits(64):X}@{EXCHANGE_HOST}>",
                 "SizeInBytes": rng.randrange(2000, 90000)}
                for _ in range(rng.randrange(1, 4))],
            "Id": f"LgAAAAB{rng.getrandbits(120):030x}AAAB", "Path": rng.choice(FOLDERS)}]
        fields["OperationCount"] = rng.randrange(1, 12)
    else:
        fields["Item"] = {
            "Id": f"RgAAAAB{rng.getrandbits(160):040x}AAAJ",
            "InternetMessageId": f"<{rng.getrandbits(64):X}@DB3PR0102MB3500.eurprd01.prod.exchangelabs.com>",
            "ParentFolder": {"Id": f"LgAAAAB{rng.getrandbits(120):030x}AAAB", "Path": rng.choice(FOLDERS)},
            "Subject": rng.choice(("Quarterly numbers", "Re: project update", "Lunch?", "Invoice 4471",
                                   "Réunion d'équipe", "FW: contract draft", "Welcome to the team")),
            "SizeInBytes": rng.randrange(2000, 200000),
        }
        if operation == "MoveToDeletedItems":
            fields["DestFolder"] = {"Id": f"LgAAAAB{rng.getrandbits(120):030x}AAAB",
                                    "Path": "\\Deleted Items"}
    return _base(t, when, 2, "Exchange", operation, user, **fields)


def exchange_admin(t: _Tenant, when: datetime) -> dict[str, Any]:
    rng = t.rng
    operation = rng.choice(("Set-Mailbox", "New-InboxRule", "Set-InboxRule", "Add-MailboxPermission",
                            "Set-MailboxJunkEmailConfiguration"))
    user = rng.choice(("NT AUTHORITY\\SYSTEM (Microsoft.Exchange.ServiceHost)", *t.admins))
    target = rng.choice(t.users)
    return _base(t, when, 1, "Exchange", operation, user, ResultStatus="True", UserType=2,
                 ObjectId=f"EURPR01A002.prod.outlook.com/Microsoft Exchange Hosted Organizations/"
                          f"{t.domain}/{target.split('@')[0]}",
                 Parameters=[{"Name": "Identity", "Value": target}, {"Name": "Force", "Value": "True"},
                             {"Name": "DomainController", "Value": ""}],
                 OriginatingServer=f"HE1PR0102MB{rng.randrange(1000, 9999)} (15.20.2707.017)",
                 OrganizationName=t.domain, ExternalAccess=user.startswith("NT "))


def sharepoint_file(t: _Tenant, when: datetime) -> dict[str, Any]:
    rng = t.rng
    user = t.user()
    onedrive = rng.random() < 0.4
    operation = rng.choices(("FileAccessed", "FileModified", "FileDownloaded", "FileUploaded",
                             "PageViewed", "FilePreviewed", "FileSyncDownloadedFull", "FileDeleted"),
                            (40, 15, 10, 8, 12, 8, 4, 3))[0]
    if onedrive:
        site = f"https://contoso-my.sharepoint.com/personal/{user.replace('@', '_').replace('.', '_')}/"
        folder = "Documents"
    else:
        site = rng.choice(t.sites) + "/"
        folder = rng.choice(("Shared Documents", "Shared Documents/General", "SiteAssets", "Reports/2026"))
    name = f"{rng.choice(('Budget', 'Plan', 'Notes', 'Screenshot', 'Report', 'Draft'))} " \
           f"{rng.randrange(1, 400)}.{rng.choice(FILE_EXT)}"
    ip = rng.choice(t.ips)
    return _base(
        t, when, 6 if operation != "PageViewed" else 4, "OneDrive" if onedrive else "SharePoint",
        operation, user, ClientIP=ip, CorrelationId=t.uuid(), EventSource="SharePoint",
        ItemType="File" if operation != "PageViewed" else "Page", ListId=t.uuid(),
        ListItemUniqueId=t.uuid(), Site=t.uuid(), UserAgent=rng.choice(USER_AGENTS), WebId=t.uuid(),
        ObjectId=f"{site}{folder}/{name}", SiteUrl=site, SourceFileExtension=name.rsplit(".", 1)[1],
        SourceFileName=name, SourceRelativeUrl=folder, HighPriorityMediaProcessing=False,
        ApplicationDisplayName=rng.choice(("Microsoft Teams", "OneDrive SyncEngine",
                                           "SharePoint Online Web")),
        DeviceDisplayName=f"{rng.getrandbits(64):x}", IsManagedDevice=rng.random() < 0.7,
        GeoLocation="EUR", BrowserName="Edge", BrowserVersion="130.0.0.0")


def aad_logon(t: _Tenant, when: datetime) -> dict[str, Any]:
    rng = t.rng
    user = t.user()
    failed = rng.random() < 0.06
    ip = rng.choice(t.ips)
    return _base(
        t, when, 15, "AzureActiveDirectory", "UserLoginFailed" if failed else "UserLoggedIn", user,
        ResultStatus="Failed" if failed else "Success", ClientIP=ip, ActorIpAddress=ip,
        ObjectId="00000003-0000-0000-c000-000000000000", ApplicationId=t.uuid(),
        AzureActiveDirectoryEventType=1, ActorContextId=t.org, TargetContextId=t.org,
        InterSystemsId=t.uuid(), IntraSystemId=t.uuid(), SupportTicketId="", ModifiedProperties=[],
        Actor=[{"ID": t.object_ids[user], "Type": 0}, {"ID": user, "Type": 5}],
        Target=[{"ID": "00000003-0000-0000-c000-000000000000", "Type": 0}],
        ExtendedProperties=[
            {"Name": "ResultStatusDetail", "Value": "Redirect" if not failed else "Invalid password"},
            {"Name": "UserAgent", "Value": rng.choice(USER_AGENTS)},
            {"Name": "RequestType", "Value": rng.choice(("OAuth2:Authorize", "OAuth2:Token", "Login:login"))},
            {"Name": "KeepMeSignedIn", "Value": "False"},
        ],
        DeviceProperties=[{"Name": "OS", "Value": "Windows10"}, {"Name": "BrowserType", "Value": "Edge"},
                          {"Name": "IsCompliantAndManaged", "Value": "True"},
                          {"Name": "SessionId", "Value": t.uuid()}],
        ErrorNumber="50126" if failed else "0")


def aad_admin(t: _Tenant, when: datetime) -> dict[str, Any]:
    rng = t.rng
    operation = rng.choice(("Update user.", "Add member to group.", "Add user.", "Add member to role.",
                            "Update application.", "Consent to application."))
    target = rng.choice(t.users)
    return _base(
        t, when, 8, "AzureActiveDirectory", operation, rng.choice(t.admins), ResultStatus="Success",
        ObjectId=target, AzureActiveDirectoryEventType=1, ActorContextId=t.org, TargetContextId=t.org,
        Actor=[{"ID": rng.choice(t.admins), "Type": 5}], Target=[{"ID": target, "Type": 5}],
        ModifiedProperties=[
            {"Name": "AccountEnabled", "NewValue": "[\r\n  true\r\n]", "OldValue": "[]"},
            {"Name": "Included Updated Properties", "NewValue": "AccountEnabled", "OldValue": ""}],
        ExtendedProperties=[{"Name": "additionalDetails", "Value": "{\"UserType\":\"Member\"}"},
                            {"Name": "extendedAuditEventCategory", "Value": "User"}])


def teams_activity(t: _Tenant, when: datetime) -> dict[str, Any]:
    rng = t.rng
    user = t.user()
    operation = rng.choices(("TeamsSessionStarted", "MemberAdded", "ChannelAdded", "TeamCreated",
                             "MeetingDetail", "AppInstalled", "MessageEditedHasLink"),
                            (60, 10, 5, 2, 15, 4, 4))[0]
    fields: dict[str, Any] = {"ClientIP": rng.choice(t.ips)}
    if operation in ("MemberAdded", "ChannelAdded", "TeamCreated"):
        fields.update(TeamGuid=f"19:{rng.getrandbits(128):032x}@thread.tacv2",
                      TeamName=rng.choice(("Finance", "Launch", "Support", "All Company")))
    if operation == "MemberAdded":
        member = rng.choice(t.users)
        fields["Members"] = [{"DisplayName": rng.choice(DISPLAY_EXTRA), "Role": 1, "UPN": member}]
    if operation == "MeetingDetail":
        fields.update(MeetingURL=f"https://teams.microsoft.com/l/meetup-join/19%3ameeting_{rng.getrandbits(64):x}"
                                 f"%40thread.v2/0", ItemName="Weekly sync", CommunicationType="GroupCall")
    return _base(t, when, 25, "MicrosoftTeams", operation, user, **fields)


def teams_setting_change(t: _Tenant, when: datetime, *, matching: bool) -> dict[str, Any]:
    """A TeamsTenantSettingChanged record; `matching` ones are what the seed rule must catch."""
    rng = t.rng
    if matching:
        name, old, new, status = SEED_RULE_SETTING, "False", "True", "Succeeded"
    else:
        variant = rng.randrange(4)
        name = SEED_RULE_SETTING if variant < 2 else rng.choice(OTHER_TEAMS_SETTINGS)
        old, new = ("True", "False") if variant == 0 else ("False", "True")
        status = "Failed" if variant == 1 else "Succeeded"
    return _base(t, when, 25, "MicrosoftTeams", "TeamsTenantSettingChanged", rng.choice(t.admins),
                 UserType=2, ResultStatus=status, ClientIP=rng.choice(t.ips), Name=name, OldValue=old,
                 NewValue=new)


# (factory, content type, weight): a tenant's mix, per 10 000 records.
_MIX = (
    (exchange_item, "Audit.Exchange", 3700),
    (exchange_admin, "Audit.Exchange", 300),
    (sharepoint_file, "Audit.SharePoint", 3300),
    (aad_logon, "Audit.AzureActiveDirectory", 1750),
    (aad_admin, "Audit.AzureActiveDirectory", 150),
    (teams_activity, "Audit.General", 790),
    (None, "Audit.General", 10),  # TeamsTenantSettingChanged: 0.1 %
)
MATCHING_SHARE = 0.3  # of the setting changes, the share the seed rule must alert on


def make_records(count: int, seed: int = 1) -> Iterator[tuple[str, dict[str, Any]]]:
    """`count` (content type, raw record) pairs in time order, a pure function of the seed."""
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not secrets
    tenant = _Tenant(rng)
    when = datetime(2026, 11, 30, 8, 0, 0, tzinfo=UTC)
    factories = [m[0] for m in _MIX]
    kinds = [m[1] for m in _MIX]
    weights = [m[2] for m in _MIX]
    for _ in range(count):
        when += timedelta(milliseconds=rng.randrange(0, 900))
        pick = rng.choices(range(len(_MIX)), weights)[0]
        factory = factories[pick]
        if factory is None:
            record = teams_setting_change(tenant, when, matching=rng.random() < MATCHING_SHARE)
        else:
            record = factory(tenant, when)
        yield kinds[pick], record


# ---- packing records into bodies ----

def _serialise(items: Any, rng: random.Random) -> bytes:
    """JSON text as different producers write it: compact, ASCII-escaped, or with `\\/` escapes."""
    style = rng.random()
    if style < 0.10:  # a serialiser that escapes every non-ASCII character (\u00e9)
        return json.dumps(items, ensure_ascii=True, separators=(",", ":")).encode()
    if style < 0.15:  # one that escapes '/' as well
        return orjson.dumps(items).replace(b"/", b"\\/")
    if style < 0.30:
        return json.dumps(items, ensure_ascii=False).encode()  # ", " and ": " separators
    return orjson.dumps(items)


def _defender_item(record: dict[str, Any], rng: random.Random, as_string: bool) -> dict[str, Any]:
    stamp = record["CreationTime"] + f".{rng.randrange(10 ** 7):07d}Z"
    return {
        "time": stamp[:-9] + ".0000000Z", "tenantId": record["OrganizationId"], "operationName": "Publish",
        "category": "AdvancedHunting-CloudAppEvents",
        "properties": {
            "Timestamp": stamp, "ActionType": record["Operation"],
            "Application": {"Exchange": "Microsoft Exchange Online", "MicrosoftTeams": "Microsoft Teams"}
            .get(record["Workload"], "Microsoft SharePoint Online"),
            "ApplicationId": 20893, "AccountObjectId": None, "AccountDisplayName": None,
            "IPAddress": record.get("ClientIP"), "CountryCode": "NL", "ReportId": f"{rng.getrandbits(64)}",
            "RawEventData": orjson.dumps(record).decode() if as_string else record,
        },
    }


def pack(records: list[dict[str, Any]], rng: random.Random) -> tuple[str, bytes]:
    """One body from one content blob's records: (kind, bytes)."""
    shape = rng.random()
    if shape < 0.55:
        kind, data = "array", _serialise(records, rng)
    elif shape < 0.67:
        kind, data = "ndjson", b"\n".join(orjson.dumps(r) for r in records) + b"\n"
    elif shape < 0.82:
        kind, data = "records", _serialise({"records": records}, rng)
    else:
        as_string = rng.random() < 0.3
        kind = "defender-string" if as_string else "defender"
        data = orjson.dumps({"records": [_defender_item(r, rng, as_string) for r in records]})
    if rng.random() < 0.12:
        kind, data = f"gzip-{kind}", gzip.compress(data, compresslevel=6, mtime=0)
    return kind, data


def generate_bodies(count: int, seed: int = 1, *, mean_records: int = 80) -> list[Body]:
    """A stream of `count` records in bodies: content blobs of one content type, flushed by size."""
    rng = random.Random(seed * 7919 + 1)  # noqa: S311 - reproducible test data, not secrets
    buffers: dict[str, list[dict[str, Any]]] = {kind: [] for kind in CONTENT_TYPES}
    targets = {kind: 1 for kind in CONTENT_TYPES}
    bodies: list[Body] = []

    def flush(kind: str) -> None:
        records = buffers[kind]
        if records:
            shape, data = pack(records, rng)
            bodies.append(Body(shape, data, len(records)))
            buffers[kind] = []
        targets[kind] = max(1, min(int(rng.expovariate(1 / mean_records)) + 1, 20 * mean_records))

    for kind in CONTENT_TYPES:
        flush(kind)
    for kind, record in make_records(count, seed):
        buffers[kind].append(record)
        if len(buffers[kind]) >= targets[kind]:
            flush(kind)
    for kind in CONTENT_TYPES:
        flush(kind)
    return bodies
