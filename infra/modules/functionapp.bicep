// The Flex Consumption (FC1) function app and every app setting it gets. App settings are
// declared here only, so the consistency test can compare them with detection/settings.py:
// identity-based connections only, secrets only as Key Vault references, no keys anywhere.

@description('Function app name (globally unique host name).')
param name string

@description('Flex Consumption plan name.')
param planName string

@description('Azure region.')
param location string

@description('Tags applied to the plan and the app.')
param tags object = {}

@description('Resource id of the user-assigned managed identity.')
param identityId string

@description('Client id of the user-assigned managed identity.')
param identityClientId string

@description('URL of the blob container holding the deployment package.')
param deploymentContainerUrl string

@description('Python version of the Flex Consumption runtime.')
@allowed([
  '3.11'
  '3.12'
])
param pythonVersion string = '3.11'

@description('Most instances the app scales out to (one per Event Hub partition is the useful maximum).')
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

@description('Blob endpoint of the storage account (https://<account>.blob.core.windows.net/).')
param blobEndpoint string

@description('Queue endpoint of the storage account.')
param queueEndpoint string

@description('Table endpoint of the storage account (alert state).')
param tableEndpoint string

@description('Host name of the Event Hubs namespace, e.g. contoso.servicebus.windows.net.')
param eventHubNamespaceFqdn string

@description('Event Hub the trigger reads.')
param eventHubName string

@description('Consumer group the trigger reads with.')
param consumerGroupName string

@description('Application Insights connection string (locates the ingestion endpoint; local auth is disabled).')
param appInsightsConnectionString string

@description('Key Vault URI, e.g. https://<vault>.vault.azure.net/.')
param keyVaultUri string

@description('Secret names of the configured destinations; empty for a destination that is not configured.')
param secretNames object

@description('Dead-letter container name.')
param deadletterContainerName string

@description('NCRONTAB schedule of the redelivery timer.')
param redeliverSchedule string

@description('More app settings from the configuration table (e.g. TEAMS_MIN_SEVERITY); they cannot replace the settings above.')
param additionalAppSettings object = {}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: Zone redundancy of Flex Consumption depends on the region; the platform restarts instances elsewhere and the Event Hub checkpoint makes that lossless.
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_17: The app has no HTTP functions, only Event Hub and timer triggers: no endpoint receives client certificates.
  // checkov:skip=CKV_AZURE_213: Same as CKV_AZURE_17: there is no HTTP endpoint to health-check; the host's own health is in Application Insights.
  // checkov:skip=CKV_AZURE_222: Deployment (azd deploy / OneDeploy) reaches the app's scm endpoint publicly when there is no virtual network; with no HTTP functions nothing else listens.
  // checkov:skip=CKV_AZURE_212: Flex Consumption scales out per Event Hub partition on demand; always-ready instances are a cost choice, and a lost instance's partitions are picked up by another.
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      minTlsVersion: '1.2'
      http20Enabled: true
      ftpsState: 'Disabled'
      appSettings: appSettings
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }
}

// A Key Vault reference per configured destination, resolved by the platform with
// keyVaultReferenceIdentity; versionless, so a new secret version is picked up without redeploying.
var teamsSettings = empty(secretNames.teams) ? {} : {
  TEAMS_WEBHOOK_URL: '@Microsoft.KeyVault(SecretUri=${keyVaultUri}secrets/${secretNames.teams}/)'
}
var slackSettings = empty(secretNames.slack) ? {} : {
  SLACK_WEBHOOK_URL: '@Microsoft.KeyVault(SecretUri=${keyVaultUri}secrets/${secretNames.slack}/)'
}
var webhookUrlSettings = empty(secretNames.webhookUrl) ? {} : {
  WEBHOOK_URL: '@Microsoft.KeyVault(SecretUri=${keyVaultUri}secrets/${secretNames.webhookUrl}/)'
}
var webhookSecretSettings = empty(secretNames.webhookSecret) ? {} : {
  WEBHOOK_SECRET: '@Microsoft.KeyVault(SecretUri=${keyVaultUri}secrets/${secretNames.webhookSecret}/)'
}

var baseSettings = {
  // The host's own storage, through the managed identity.
  AzureWebJobsStorage__blobServiceUri: blobEndpoint
  AzureWebJobsStorage__queueServiceUri: queueEndpoint
  AzureWebJobsStorage__tableServiceUri: tableEndpoint
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  // The Event Hub trigger's connection (prefix EventHubConnection in function_app.py).
  EventHubConnection__fullyQualifiedNamespace: eventHubNamespaceFqdn
  EventHubConnection__credential: 'managedidentity'
  EventHubConnection__clientId: identityClientId
  EVENTHUB_NAME: eventHubName
  EVENTHUB_CONSUMER_GROUP: consumerGroupName
  REDELIVER_SCHEDULE: redeliverSchedule
  // Alert state and dead letters, through the same identity (DefaultAzureCredential reads AZURE_CLIENT_ID).
  ALERTS_STORAGE_ENDPOINT: tableEndpoint
  DEADLETTER_CONTAINER: deadletterContainerName
  AZURE_CLIENT_ID: identityClientId
  // Telemetry with Entra ID authentication only.
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
}

// The settings above win over additionalAppSettings: identity and secret wiring cannot be replaced.
var allSettings = union(additionalAppSettings, baseSettings, teamsSettings, slackSettings, webhookUrlSettings, webhookSecretSettings)
var appSettings = [for setting in items(allSettings): {
  name: setting.key
  value: setting.value
}]

output name string = site.name
output defaultHostName string = site.properties.defaultHostName
