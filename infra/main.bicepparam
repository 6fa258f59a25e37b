// Parameters for azd (values come from the azd environment: `azd env set NAME value`) and for
// `az deployment group create --parameters infra/main.bicepparam` (values from the shell's
// environment). Every value has a default, so a plain `azd up` deploys a complete, new setup.
using './main.bicep'

param environmentName = readEnvironmentVariable('AZURE_ENV_NAME', 'm365detect')

// Read an existing hub instead of creating one: set both names (and the resource group if it differs).
param existingEventHubNamespaceName = readEnvironmentVariable('EXISTING_EVENTHUB_NAMESPACE', '')
param existingEventHubResourceGroupName = readEnvironmentVariable('EXISTING_EVENTHUB_RESOURCE_GROUP', '')
param eventHubName = readEnvironmentVariable('EVENTHUB_NAME', 'm365-audit')
param eventHubPartitionCount = int(readEnvironmentVariable('EVENTHUB_PARTITION_COUNT', '4'))
param consumerGroupName = readEnvironmentVariable('EVENTHUB_CONSUMER_GROUP', 'm365-detect')
// SAS keys stay off unless a producer needs them: the Defender XDR streaming API and Azure Monitor
// exports deliver with the namespace's shared access keys (set EVENTHUB_DISABLE_LOCAL_AUTH=false).
param eventHubDisableLocalAuth = bool(readEnvironmentVariable('EVENTHUB_DISABLE_LOCAL_AUTH', 'true'))

// Who may publish with `python -m detection send`: an object id, e.g. `az ad signed-in-user show --query id -o tsv`.
param senderPrincipalId = readEnvironmentVariable('EVENTHUB_SENDER_PRINCIPAL_ID', '')

// Secrets: stored in Key Vault only, never in app settings or outputs.
param teamsWebhookUrl = readEnvironmentVariable('TEAMS_WEBHOOK_URL', '')
param slackWebhookUrl = readEnvironmentVariable('SLACK_WEBHOOK_URL', '')
param webhookUrl = readEnvironmentVariable('WEBHOOK_URL', '')
param webhookSecret = readEnvironmentVariable('WEBHOOK_SECRET', '')

// Any other setting of the configuration table, as a JSON object.
param additionalAppSettings = json(readEnvironmentVariable('ADDITIONAL_APP_SETTINGS', '{}'))
