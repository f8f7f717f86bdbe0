// Package model holds Sluice's resource types (projects, endpoints, subscriptions, events, deliveries,
// attempts), their validation, the event-type/filter matching rules and the sortable IDs every key is
// built from. It has no I/O: the replicated store persists these types and the API speaks them as JSON.
package model
