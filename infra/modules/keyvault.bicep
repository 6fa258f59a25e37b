// Key Vault holding the notification secrets (webhook URLs are bearer secrets: whoever has one can
// post into the channel). The app reads them through Key Vault references resolved by the platform
// with the managed identity, so they never appear in app settings, templates' outputs or logs.

@description('Key Vault name (3-24 characters, globally unique).')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region.')
param location string

@description('Tags applied to the vault.')
param tags object = {}

@description('Principal id of the managed identity that reads the secrets.')
param readerPrincipalId string

@description('Teams Workflows webhook URL; the secret is created only when a value is given.')
@secure()
param teamsWebhookUrl string = ''

@description('Slack incoming webhook URL; the secret is created only when a value is given.')
@secure()
param slackWebhookUrl string = ''

@description('Generic JSON webhook URL; the secret is created only when a value is given.')
@secure()
param webhookUrl string = ''

@description('HMAC key signing the generic webhook body; the secret is created only when a value is given.')
@secure()
param webhookSecret string = ''

@description('Names of the secrets, as main.bicep references them.')
param secretNames object

// Built-in role: Key Vault Secrets User (read secret values, nothing else).
var secretsUserRole = '4633458b-17de-408a-b874-0445c86b69e6'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109: Flex Consumption without virtual network integration resolves Key Vault references over the public endpoint; access is RBAC-only and limited to the app's identity.
  // checkov:skip=CKV_AZURE_189: Same as CKV_AZURE_109: public network access is needed without a virtual network.
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    enabledForDeployment: false
    enabledForDiskEncryption: false
    enabledForTemplateDeployment: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

// One module per secret, deployed only when a value is given: no empty secrets, and a
// destination that is not configured has no app setting at all.
module teamsSecret 'keyvault-secret.bicep' = if (!empty(teamsWebhookUrl)) {
  name: 'secret-teams'
  params: {
    vaultName: vault.name
    name: secretNames.teams
    value: teamsWebhookUrl
    contentType: 'text/uri-list'
  }
}

module slackSecret 'keyvault-secret.bicep' = if (!empty(slackWebhookUrl)) {
  name: 'secret-slack'
  params: {
    vaultName: vault.name
    name: secretNames.slack
    value: slackWebhookUrl
    contentType: 'text/uri-list'
  }
}

module webhookUrlSecret 'keyvault-secret.bicep' = if (!empty(webhookUrl)) {
  name: 'secret-webhook-url'
  params: {
    vaultName: vault.name
    name: secretNames.webhookUrl
    value: webhookUrl
    contentType: 'text/uri-list'
  }
}

module webhookKeySecret 'keyvault-secret.bicep' = if (!empty(webhookSecret)) {
  name: 'secret-webhook-key'
  params: {
    vaultName: vault.name
    name: secretNames.webhookSecret
    value: webhookSecret
    contentType: 'text/plain'
  }
}

resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, readerPrincipalId, secretsUserRole)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', secretsUserRole)
    principalId: readerPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output name string = vault.name
// The vault's address only; secret values never leave the vault through outputs.
output vaultUri string = vault.properties.vaultUri
