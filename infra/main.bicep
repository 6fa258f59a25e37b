// m365-detect: detection rules over the Microsoft 365 audit stream, on Azure Functions.
//
// Deploys into one resource group (azd up, or az deployment group create):
//   user-assigned identity ─┬─ Flex Consumption function app (Python)
//                           ├─ storage: host state, deployment package, dead letters, alert tables
//                           ├─ Event Hub (new, or an existing one): own consumer group, Data Receiver
//                           ├─ Key Vault: webhook URLs and signing key, read via Key Vault references
//                           └─ Application Insights (Entra ID ingestion only) + Log Analytics
// No keys or connection strings are created or handed out; every role is scoped to its resource.

targetScope = 'resourceGroup'

@description('Name of the environment (azd environment name); part of every resource name hash.')
@minLength(1)
@maxLength(64)
param environmentName string

@description('Azure region of every resource (a region offering Flex Consumption).')
param location string = resourceGroup().location

@description('Tags applied to every resource.')
param tags object = {}

// ---- Event Hub: a new one, or an existing one given by name ----

@description('Existing Event Hubs namespace to read from; empty creates a new namespace.')
param existingEventHubNamespaceName string = ''

@description('Resource group of the existing namespace; empty for this resource group.')
param existingEventHubResourceGroupName string = ''

@description('Event Hub carrying the audit records: the name of the new hub, or of the existing hub in the existing namespace.')
param eventHubName string = 'm365-audit'

@description('Partitions of a new hub (fixed after creation): the most instances reading at once.')
@minValue(1)
@maxValue(32)
param eventHubPartitionCount int = 4

@description('Days a new hub keeps events: how long the app can be down or failing without losing records.')
@minValue(1)
@maxValue(7)
param eventHubRetentionDays int = 7

@description('Throughput units of a new namespace.')
@minValue(1)
@maxValue(40)
param eventHubCapacity int = 1

@description('Disable SAS keys on a new namespace. Set false only for a producer that cannot use Entra ID.')
param eventHubDisableLocalAuth bool = true

@description('Consumer group of the trigger; created in the hub unless it is $Default.')
param consumerGroupName string = 'm365-detect'

@description('Optional principal granted Event Hubs Data Sender on the hub (for `python -m detection send`); empty for none.')
param senderPrincipalId string = ''

@description('Kind of the optional sender principal.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param senderPrincipalType string = 'User'

// ---- Notifications: secrets go to Key Vault only ----

@description('Teams Workflows "When a Teams webhook request is received" URL; empty disables Teams.')
@secure()
param teamsWebhookUrl string = ''

@description('Slack incoming webhook URL; empty disables Slack.')
@secure()
param slackWebhookUrl string = ''

@description('Generic JSON webhook URL (SOAR); empty disables it.')
@secure()
param webhookUrl string = ''

@description('HMAC-SHA256 key signing the generic webhook body; empty sends unsigned.')
@secure()
param webhookSecret string = ''

// ---- The app ----

@description('More app settings from the configuration table, e.g. {"TEAMS_MIN_SEVERITY": "high"}. They cannot replace the identity and secret wiring.')
param additionalAppSettings object = {}

@description('NCRONTAB schedule of the redelivery of owed notifications.')
param redeliverSchedule string = '0 */5 * * * *'

@description('Most instances of the app.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Memory of each instance.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Replication of the storage account.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param storageSkuName string = 'Standard_LRS'

@description('Days Log Analytics keeps logs.')
@minValue(30)
@maxValue(730)
param logRetentionInDays int = 30

var resourceToken = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName))
var allTags = union(tags, {
  'azd-env-name': environmentName
})

// Names the code also knows (detection/settings.py defaults); the consistency test compares them.
var deploymentContainerName = 'deployment'
var deadletterContainerName = 'deadletter'
var tableNames = [
  'alerts'
  'alertgroups'
  'health'
]
var secretNames = {
  teams: 'teams-webhook-url'
  slack: 'slack-webhook-url'
  webhookUrl: 'webhook-url'
  webhookSecret: 'webhook-secret'
}

var useExistingEventHub = !empty(existingEventHubNamespaceName)
var eventHubNamespaceName = useExistingEventHub ? existingEventHubNamespaceName : 'evhns-m365-${resourceToken}'
var eventHubResourceGroupName = useExistingEventHub && !empty(existingEventHubResourceGroupName) ? existingEventHubResourceGroupName : resourceGroup().name

module identity 'modules/identity.bicep' = {
  name: 'identity'
  params: {
    name: 'id-m365detect-${resourceToken}'
    location: location
    tags: allTags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    workspaceName: 'log-m365detect-${resourceToken}'
    appInsightsName: 'appi-m365detect-${resourceToken}'
    location: location
    tags: allTags
    retentionInDays: logRetentionInDays
    publisherPrincipalId: identity.outputs.principalId
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    name: 'st${resourceToken}'
    location: location
    tags: allTags
    skuName: storageSkuName
    deploymentContainerName: deploymentContainerName
    deadletterContainerName: deadletterContainerName
    tableNames: tableNames
    principalId: identity.outputs.principalId
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  params: {
    name: 'kv-${resourceToken}'
    location: location
    tags: allTags
    readerPrincipalId: identity.outputs.principalId
    teamsWebhookUrl: teamsWebhookUrl
    slackWebhookUrl: slackWebhookUrl
    webhookUrl: webhookUrl
    webhookSecret: webhookSecret
    secretNames: secretNames
  }
}

module eventHub 'modules/eventhub.bicep' = if (!useExistingEventHub) {
  name: 'eventhub'
  params: {
    namespaceName: eventHubNamespaceName
    eventHubName: eventHubName
    location: location
    tags: allTags
    partitionCount: eventHubPartitionCount
    messageRetentionInDays: eventHubRetentionDays
    capacity: eventHubCapacity
    disableLocalAuth: eventHubDisableLocalAuth
  }
}

module eventHubAccess 'modules/eventhub-access.bicep' = {
  name: 'eventhub-access'
  scope: resourceGroup(eventHubResourceGroupName)
  params: {
    namespaceName: eventHubNamespaceName
    eventHubName: eventHubName
    consumerGroupName: consumerGroupName
    receiverPrincipalId: identity.outputs.principalId
    senderPrincipalId: senderPrincipalId
    senderPrincipalType: senderPrincipalType
  }
  dependsOn: [
    eventHub
  ]
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  params: {
    name: 'func-m365detect-${resourceToken}'
    planName: 'plan-m365detect-${resourceToken}'
    location: location
    tags: allTags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    deploymentContainerUrl: storage.outputs.deploymentContainerUrl
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    blobEndpoint: storage.outputs.blobEndpoint
    queueEndpoint: storage.outputs.queueEndpoint
    tableEndpoint: storage.outputs.tableEndpoint
    eventHubNamespaceFqdn: eventHubAccess.outputs.fullyQualifiedNamespace
    eventHubName: eventHubName
    consumerGroupName: eventHubAccess.outputs.consumerGroupName
    appInsightsConnectionString: monitoring.outputs.appInsightsConnectionString
    keyVaultUri: keyVault.outputs.vaultUri
    secretNames: {
      teams: empty(teamsWebhookUrl) ? '' : secretNames.teams
      slack: empty(slackWebhookUrl) ? '' : secretNames.slack
      webhookUrl: empty(webhookUrl) ? '' : secretNames.webhookUrl
      webhookSecret: empty(webhookSecret) ? '' : secretNames.webhookSecret
    }
    deadletterContainerName: deadletterContainerName
    redeliverSchedule: redeliverSchedule
    additionalAppSettings: additionalAppSettings
  }
}

// Names and endpoints only: nothing here grants access by itself.
output AZURE_LOCATION string = location
output AZURE_RESOURCE_GROUP string = resourceGroup().name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output MANAGED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output EVENTHUB_NAMESPACE_FQDN string = eventHubAccess.outputs.fullyQualifiedNamespace
output EVENTHUB_NAME string = eventHubName
output EVENTHUB_CONSUMER_GROUP string = consumerGroupName
output STORAGE_ACCOUNT_NAME string = storage.outputs.name
output STORAGE_BLOB_ENDPOINT string = storage.outputs.blobEndpoint
output ALERTS_STORAGE_ENDPOINT string = storage.outputs.tableEndpoint
output KEY_VAULT_NAME string = keyVault.outputs.name
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.appInsightsName
