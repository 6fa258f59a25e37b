"""Constant tables of Elastic's o365 audit mapping, kept apart so the mapping code stays straight-line.

The values mirror what Elastic's o365 integration does, because rules written for Elastic must see the
same field values here. Everything is a frozenset or a plain dict built once at import.
"""

from __future__ import annotations

from types import MappingProxyType

# RecordType number (as text) -> the AuditLogRecordType member name written to event.code: Elastic's table
# first, then the members Microsoft's enumeration adds beyond it. A number in neither keeps its own value.
RECORD_TYPES: dict[str, str] = {
    "1": "ExchangeAdmin",
    "2": "ExchangeItem",
    "3": "ExchangeItemGroup",
    "4": "SharePoint",
    "6": "SharePointFileOperation",
    "7": "OneDrive",
    "8": "AzureActiveDirectory",
    "9": "AzureActiveDirectoryAccountLogon",
    "10": "DataCenterSecurityCmdlet",
    "11": "ComplianceDLPSharePoint",
    "12": "Sway",
    "13": "ComplianceDLPExchange",
    "14": "SharePointSharingOperation",
    "15": "AzureActiveDirectoryStsLogon",
    "16": "SkypeForBusinessPSTNUsage",
    "17": "SkypeForBusinessUsersBlocked",
    "18": "SecurityComplianceCenterEOPCmdlet",
    "19": "ExchangeAggregatedOperation",
    "20": "PowerBIAudit",
    "21": "CRM",
    "22": "Yammer",
    "23": "SkypeForBusinessCmdlets",
    "24": "Discovery",
    "25": "MicrosoftTeams",
    "28": "ThreatIntelligence",
    "29": "MailSubmission",
    "30": "MicrosoftFlow",
    "31": "AeD",
    "32": "MicrosoftStream",
    "33": "ComplianceDLPSharePointClassification",
    "34": "ThreatFinder",
    "35": "Project",
    "36": "SharePointListOperation",
    "37": "SharePointCommentOperation",
    "38": "DataGovernance",
    "39": "Kaizala",
    "40": "SecurityComplianceAlerts",
    "41": "ThreatIntelligenceUrl",
    "42": "SecurityComplianceInsights",
    "43": "MIPLabel",
    "44": "WorkplaceAnalytics",
    "45": "PowerAppsApp",
    "46": "PowerAppsPlan",
    "47": "ThreatIntelligenceAtpContent",
    "48": "LabelContentExplorer",
    "49": "TeamsHealthcare",
    "50": "ExchangeItemAggregated",
    "51": "HygieneEvent",
    "52": "DataInsightsRestApiAudit",
    "53": "InformationBarrierPolicyApplication",
    "54": "SharePointListItemOperation",
    "55": "SharePointContentTypeOperation",
    "56": "SharePointFieldOperation",
    "57": "MicrosoftTeamsAdmin",
    "58": "HRSignal",
    "59": "MicrosoftTeamsDevice",
    "60": "MicrosoftTeamsAnalytics",
    "61": "InformationWorkerProtection",
    "62": "Campaign",
    "63": "DLPEndpoint",
    "64": "AirInvestigation",
    "65": "Quarantine",
    "66": "MicrosoftForms",
    "67": "ApplicationAudit",
    "68": "ComplianceSupervisionExchange",
    "69": "CustomerKeyServiceEncryption",
    "70": "OfficeNative",
    "71": "MipAutoLabelSharePointItem",
    "72": "MipAutoLabelSharePointPolicyLocation",
    "73": "MicrosoftTeamsShifts",
    "75": "MipAutoLabelExchangeItem",
    "76": "CortanaBriefing",
    "78": "WDATPAlerts",
    "82": "SensitivityLabelPolicyMatch",
    "83": "SensitivityLabelAction",
    "84": "SensitivityLabeledFileAction",
    "85": "AttackSim",
    "86": "AirManualInvestigation",
    "87": "SecurityComplianceRBAC",
    "88": "UserTraining",
    "89": "AirAdminActionInvestigation",
    "90": "MSTIC",
    "91": "PhysicalBadgingSignal",
    "93": "AipDiscover",
    "94": "AipSensitivityLabelAction",
    "95": "AipProtectionAction",
    "96": "AipFileDeleted",
    "97": "AipHeartBeat",
    "98": "MCASAlerts",
    "99": "OnPremisesFileShareScannerDlp",
    "100": "OnPremisesSharePointScannerDlp",
    "101": "ExchangeSearch",
    "102": "SharePointSearch",
    "103": "PrivacyInsights",
    "105": "MyAnalyticsSettings",
    "106": "SecurityComplianceUserChange",
    "107": "ComplianceDLPExchangeClassification",
    "109": "MipExactDataMatch",
    "113": "MS365DCustomDetection",
    "147": "CoreReportingSettings",
    "148": "ComplianceConnector",
    "174": "DataShareOperation",
    "181": "EduDataLakeDownloadOperation",
    # Microsoft's AuditLogRecordType members that Elastic's table does not name (yet).
    "154": "OMEPortal",
    "183": "MicrosoftGraphDataConnectOperation",
    "186": "PowerPagesSite",
    "188": "PlannerPlan",
    "189": "PlannerCopyPlan",
    "190": "PlannerTask",
    "191": "PlannerRoster",
    "192": "PlannerPlanList",
    "193": "PlannerTaskList",
    "194": "PlannerTenantSettings",
    "195": "ProjectForTheWebProject",
    "196": "ProjectForTheWebTask",
    "197": "ProjectForTheWebRoadmap",
    "198": "ProjectForTheWebRoadmapItem",
    "199": "ProjectForTheWebProjectSettings",
    "200": "ProjectForTheWebRoadmapSettings",
    "216": "VivaGoals",
    "217": "MicrosoftGraphDataConnectConsent",
    "218": "AttackSimAdmin",
    "230": "TeamsUpdates",
    "231": "PlannerRosterSensitivityLabel",
    "237": "DefenderExpertsforXDRAdmin",
    "251": "VfamCreatePolicy",
    "252": "VfamUpdatePolicy",
    "253": "VfamDeletePolicy",
    "261": "CopilotInteraction",
    "287": "ProjectForTheWebAssignedToMeSettings",
}

# Operation -> event.action. Elastic renames these only for the workload each belongs to (Teams for the
# first two, Azure AD for the rest, Teams too for "Delete user."); those operations are logged by no other
# workload, so applying the table to every record gives the same documents and lets the prefilter treat
# event.action as a pure function of Operation.
ACTION_RENAMES: MappingProxyType[str, str] = MappingProxyType(
    {
        "TeamCreated": "added-group-account-to",
        "MemberAdded": "added-users-to-group",
        "Add user.": "added-user-account",
        "Update user.": "modified-user-account",
        "Delete user.": "deleted-user-account",
    }
)

# ResultStatus (lower-cased) -> event.outcome; anything else, or no ResultStatus, is a success.
OUTCOMES: dict[str, str] = {
    "succeeded": "success",
    "success": "success",
    "partiallysucceeded": "success",
    "true": "success",
    "failed": "failure",
    "false": "failure",
}

SEVERITIES: dict[str, int] = {"informational": 1, "low": 2, "medium": 3, "high": 4}

PLATFORMS: dict[str, str] = {
    "0": "Unknown",
    "1": "Windows",
    "2": "MacOS",
    "3": "iOS",
    "4": "Android",
    "5": "Web Browser",
}

# Keys whose numbers (and "1e3"-style strings) Elastic rewrites as integer text before anything else.
INTEGER_TEXT_KEYS = (
    "RecordType",
    "ActorYammerUserId",
    "TargetYammerUserId",
    "YammerNetworkId",
    "Version",
    "InternalLogonType",
    "LogonType",
    "RunningTime",
    "FileSize",
)

# Keys Elastic converts to keyword text at the end (numbers become their decimal text).
STRING_KEYS = (
    "AzureActiveDirectoryEventType",
    "RecordType",
    "UserType",
    "Version",
    "InternalLogonType",
    "LogonType",
    "ActorYammerUserId",
    "YammerNetworkId",
)

# Operation-driven extras for any workload: action -> (categories, types), in Elastic's append order.
_FILE_ACTIONS = (
    "FileAccessed", "FileDeleted", "FileDownloaded", "FileModified", "FileMoved", "FileRenamed",
    "FileRestored", "FileUploaded", "FolderCopied", "FolderCreated", "FolderDeleted", "FolderModified",
    "FolderMoved", "FolderRenamed", "FolderRestored",
)  # fmt: skip
_TYPE_BY_ACTION = {
    "access": ("FileAccessed", "FileDownloaded"),
    "change": (
        "ComplianceSettingChanged", "FileModified", "FileMoved", "FileRenamed", "FileRestored",
        "FolderModified", "FolderMoved", "FolderRenamed", "FolderRestored",
    ),
    "deletion": ("FileDeleted", "FolderDeleted"),
    "creation": ("FileUploaded", "FolderCopied", "FolderCreated"),
}  # fmt: skip

_YAMMER_CONFIG = (
    "NetworkConfigurationUpdated", "NetworkSecurityConfigurationUpdated", "SoftDeleteSettingsUpdated",
    "ProcessProfileFields", "SupervisorAdminToggled",
)  # fmt: skip
_YAMMER_CATEGORY = {
    "configuration": _YAMMER_CONFIG,
    "iam": (
        "NetworkSecurityConfigurationUpdated", "GroupCreation", "GroupDeletion", "NetworkUserSuspended",
        "UserSuspension",
    ),
    "file": (
        "FileCreated", "FileDownloaded", "FileShared", "FileUpdateDescription", "FileUpdateName",
        "FileVisited",
    ),
}  # fmt: skip
_YAMMER_TYPE = {
    "change": _YAMMER_CONFIG,
    "admin": ("NetworkSecurityConfigurationUpdated",),
    "creation": ("FileCreated", "GroupCreation", "FileUpdateName"),
    "deletion": ("GroupDeletion",),
    "access": ("FileDownloaded", "FileShared", "FileUpdateDescription", "FileVisited"),
    "group": ("GroupCreation", "GroupDeletion"),
}


def _extras(
    categories: dict[str, tuple[str, ...]], types: dict[str, tuple[str, ...]]
) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """Invert {value: actions} tables into {action: (categories, types)} keeping the append order."""
    actions = {a for group in (*categories.values(), *types.values()) for a in group}
    return {
        action: (
            tuple(c for c, acts in categories.items() if action in acts),
            tuple(t for t, acts in types.items() if action in acts),
        )
        for action in actions
    }


ACTION_EXTRAS = _extras(
    {"file": _FILE_ACTIONS, "configuration": ("ComplianceSettingChanged",)}, _TYPE_BY_ACTION
)
YAMMER_EXTRAS = _extras(_YAMMER_CATEGORY, _YAMMER_TYPE)

# Workload-specific extras keyed by (event.code, event.action after renames).
CODE_ACTION_EXTRAS: dict[tuple[str, str], tuple[tuple[str, ...], tuple[str, ...]]] = {
    ("AzureActiveDirectory", "added-user-account"): (("iam",), ("user", "creation")),
    ("AzureActiveDirectory", "modified-user-account"): (("iam",), ("user", "change")),
    ("AzureActiveDirectory", "deleted-user-account"): (("iam",), ("user", "deletion")),
    ("MicrosoftTeams", "added-group-account-to"): (("iam",), ("group", "creation")),
    ("MicrosoftTeams", "added-users-to-group"): (("iam",), ("group", "change")),
    ("MicrosoftTeams", "deleted-user-account"): (("iam",), ("user", "deletion")),
}

DLP_CODES = frozenset({"ComplianceDLPSharePoint", "ComplianceDLPExchange"})
SHAREPOINT_FILE_CODES = frozenset({"SharePointFileOperation", "SharePointSharingOperation"})

# Date-valued keys Elastic rewrites to its ISO form (top level of the record).
DATE_KEYS = ("EndTimeUtc", "LastUpdateTimeUtc", "StartTimeUtc", "StartTime", "FilteringDate")

# Keys of the stringly `Data` blob (SecurityComplianceAlerts and friends) Elastic lifts to o365.audit.Data.
DATA_KEYS = (
    "ad", "af", "aii", "ail", "alk", "als", "an", "at", "cid", "cpid", "dm", "dpn", "eid", "etps", "etype",
    "f3u", "fvs", "imsgid", "lon", "mat", "md", "ms", "od", "op", "ot", "plk", "pud", "reid", "rid", "sev",
    "sict", "sid", "sip", "sitmi", "srt", "ssic", "suid", "tdc", "te", "thn", "tht", "tid", "tpid", "tpt",
    "trc", "ts", "tsd", "ttdt", "ttr", "upfc", "upfv", "ut", "von", "wl", "zfh", "zfn", "zmfh", "zmfn", "zu",
)  # fmt: skip
DATA_DATE_KEYS = ("at", "md", "te", "ts", "ttdt")
ENTITY_KEYS = (
    "InternetMessageId", "NetworkMessageId", "OriginalDeliveryLocation", "P1Sender", "P2Sender",
    "PhishConfidenceLevel", "Recipient", "SenderIP", "Subject", "ThreatDetectionMethods", "Upn",
)  # fmt: skip
