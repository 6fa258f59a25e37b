// A new Event Hubs namespace and hub for the audit stream, used when the deployment is not
// pointed at an existing one. The consumer group and the role assignments live in
// eventhub-access.bicep, shared with the existing-hub path.

@description('Event Hubs namespace name (6-50 characters, globally unique).')
@minLength(6)
@maxLength(50)
param namespaceName string

@description('Event Hub name.')
param eventHubName string

@description('Azure region.')
param location string

@description('Tags applied to the namespace.')
param tags object = {}

@description('Partitions of the hub: the most function instances reading it at once. Fixed after creation on the Standard tier.')
@minValue(1)
@maxValue(32)
param partitionCount int = 4

@description('Days events are kept: how long a stopped or failing app can catch up without loss.')
@minValue(1)
@maxValue(7)
param messageRetentionInDays int = 7

@description('Throughput units of the namespace.')
@minValue(1)
@maxValue(40)
param capacity int = 1

@description('Disable SAS (shared access key) authentication. Leave true unless a producer can only use a connection string.')
param disableLocalAuth bool = true

resource namespace 'Microsoft.EventHub/namespaces@2024-01-01' = {
  name: namespaceName
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Standard'
    capacity: capacity
  }
  properties: {
    minimumTlsVersion: '1.2'
    disableLocalAuth: disableLocalAuth
    publicNetworkAccess: 'Enabled'
    isAutoInflateEnabled: false
  }
}

resource hub 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' = {
  parent: namespace
  name: eventHubName
  properties: {
    partitionCount: partitionCount
    messageRetentionInDays: messageRetentionInDays
  }
}

output namespaceName string = namespace.name
output eventHubName string = hub.name
