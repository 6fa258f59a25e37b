// The one identity the function app uses for everything: the host's storage, the Event Hub
// trigger, alert state, dead letters, Key Vault references and Application Insights ingestion.
// User-assigned, so role assignments can be granted before the app exists and survive a rebuild.

@description('Name of the user-assigned managed identity.')
param name string

@description('Azure region.')
param location string

@description('Tags applied to the identity.')
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
