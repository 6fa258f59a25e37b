// One secret in the app's vault. A module of its own so that keyvault.bicep can create it only
// when a value is given, while the secret's own properties stay plain and checkable.

@description('Name of the existing vault.')
param vaultName string

@description('Secret name.')
param name string

@description('Secret value.')
@secure()
param value string

@description('MIME type describing the value.')
param contentType string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

resource secret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  // checkov:skip=CKV_AZURE_41: Webhook URLs and signing keys do not expire on a schedule; an expiry date would silently stop notifications. Rotate by redeploying with a new value.
  parent: vault
  name: name
  properties: {
    value: value
    contentType: contentType
    attributes: {
      enabled: true
    }
  }
}

// The secret's name only; its value is never an output.
output name string = secret.name
