package model

import "time"

// RolePortal is the role a portal link's token authenticates as: one owner's endpoints, events and
// deliveries inside one project, and nothing else.
const RolePortal = "portal"

// PortalLink lets one customer (an owner id) see and manage only their own endpoints and deliveries
// in the dashboard. Only the SHA-256 of its token is stored; the token is shown once, at creation.
type PortalLink struct {
	UID       string     `json:"uid"`
	ProjectID string     `json:"project_id"`
	OwnerID   string     `json:"owner_id"`
	Name      string     `json:"name,omitempty"`
	Hash      []byte     `json:"hash"`
	ExpiresAt time.Time  `json:"expires_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
}

// Usable reports whether the link's token may be used at now: not revoked and not expired.
func (l *PortalLink) Usable(now time.Time) bool {
	return l.RevokedAt == nil && now.Before(l.ExpiresAt)
}
