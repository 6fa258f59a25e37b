// What the app needs on an Event Hub, new or existing: its own consumer group (so it never
// competes with another reader for checkpoints) and the data roles, scoped to the hub itself
// rather than the namespace. Deployed into the hub's resource group.

@description('Name of the existing Event Hubs namespace.')
param namespaceName string

@description('Name of the existing Event Hub.')
param eventHubName string

@description('Consumer group the app reads with; created unless it is $Default.')
param consumerGroupName string

@description('Principal id of the app identity (Event Hubs Data Receiver on the hub).')
param receiverPrincipalId string

@description('Optional principal allowed to publish to the hub (Event Hubs Data Sender), e.g. for `python -m detection send`; empty for none.')
param senderPrincipalId string = ''

@description('Kind of the optional sender principal.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param senderPrincipalType string = 'User'

// Built-in roles: Azure Event Hubs Data Receiver and Data Sender.
var receiverRole = 'a638d3c7-ab3a-418d-83e6-5f17a39d4fde'
var senderRole = '2b629674-e913-4c01-ae53-ef4638d8f975'

resource namespace 'Microsoft.EventHub/namespaces@2024-01-01' existing = {
  name: namespaceName
}

resource hub 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' existing = {
  parent: namespace
  name: eventHubName
}

resource consumerGroup 'Microsoft.EventHub/namespaces/eventhubs/consumergroups@2024-01-01' = if (consumerGroupName != '$Default') {
  parent: hub
  name: consumerGroupName
  properties: {
    userMetadata: 'Microsoft 365 audit detection (Azure Functions trigger)'
  }
}

resource receiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hub.id, receiverPrincipalId, receiverRole)
  scope: hub
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', receiverRole)
    principalId: receiverPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource sender 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(senderPrincipalId)) {
  name: guid(hub.id, senderPrincipalId, senderRole)
  scope: hub
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', senderRole)
    principalId: senderPrincipalId
    principalType: senderPrincipalType
  }
}

// The host name the trigger connects to, e.g. contoso.servicebus.windows.net (any Azure cloud).
output fullyQualifiedNamespace string = split(replace(namespace.properties.serviceBusEndpoint, 'https://', ''), ':')[0]
output consumerGroupName string = consumerGroupName
