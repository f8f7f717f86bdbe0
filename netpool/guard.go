package netpool

import (
	"context"
	"fmt"
	"net/netip"
	"syscall"
)

// Policy is the SSRF guard: it refuses destination addresses that are not publicly routable unicast
// (loopback, RFC 1918 and ULA private ranges, link-local, CGNAT, multicast, unspecified, documentation,
// benchmarking and other special-purpose ranges; see blockedRanges), unless Allow opens them. A Pool
// with Config.BlockPrivate checks every address it connects to with it, at dial time: the address the
// socket is about to connect to, after DNS resolution, so a name that resolves (or is rebound) to an
// internal address is refused too. The zero Policy refuses every such range. It is safe for concurrent
// use and must not be modified once in use.
type Policy struct {
	// Allow opens ranges that would otherwise be refused, e.g. 127.0.0.0/8 for tests or 10.1.2.0/24 for
	// an internal receiver. An IPv4 prefix also matches IPv4-mapped IPv6 addresses (::ffff:a.b.c.d).
	Allow []netip.Prefix
}

// blockedRange is one range the guard refuses, with the name the error gives it.
type blockedRange struct {
	prefix netip.Prefix
	what   string
}

// blockedRanges are the IANA special-purpose ranges that are not globally reachable unicast, plus
// multicast. IPv4-mapped addresses are unmapped first, and NAT64 addresses (64:ff9b::/96) are judged by
// the IPv4 address they embed, so neither is a way around the IPv4 list. Anything else that netip does
// not call global unicast is refused as well, as a backstop.
var blockedRanges = func() []blockedRange {
	rs := []struct{ cidr, what string }{
		{"0.0.0.0/8", "in \"this network\""},
		{"10.0.0.0/8", "private"},
		{"100.64.0.0/10", "shared address space (CGNAT)"},
		{"127.0.0.0/8", "loopback"},
		{"169.254.0.0/16", "link-local"},
		{"172.16.0.0/12", "private"},
		{"192.0.0.0/24", "IETF protocol assignments"},
		{"192.0.2.0/24", "documentation (TEST-NET-1)"},
		{"192.88.99.0/24", "6to4 relay anycast"},
		{"192.168.0.0/16", "private"},
		{"198.18.0.0/15", "benchmarking"},
		{"198.51.100.0/24", "documentation (TEST-NET-2)"},
		{"203.0.113.0/24", "documentation (TEST-NET-3)"},
		{"224.0.0.0/4", "multicast"},
		{"240.0.0.0/4", "reserved"}, // includes the broadcast address 255.255.255.255
		{"::/128", "unspecified"},
		{"::1/128", "loopback"},
		{"::/96", "IPv4-compatible (deprecated)"},
		{"64:ff9b:1::/48", "local-use NAT64"},
		{"100::/64", "discard-only"},
		{"2001::/23", "IETF protocol assignments"}, // Teredo, ORCHID, AMT...
		{"2001:db8::/32", "documentation"},
		{"2002::/16", "6to4"}, // embeds an IPv4 address; deprecated
		{"3fff::/20", "documentation"},
		{"5f00::/16", "SRv6 SIDs"},
		{"fc00::/7", "unique local (private)"},
		{"fe80::/10", "link-local"},
		{"fec0::/10", "site-local (deprecated)"},
		{"ff00::/8", "multicast"},
	}
	out := make([]blockedRange, len(rs))
	for i, r := range rs {
		out[i] = blockedRange{netip.MustParsePrefix(r.cidr), r.what}
	}
	return out
}()

// nat64 is the well-known NAT64 prefix (RFC 6052): the last 32 bits are an IPv4 address.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// Check returns nil if deliveries may connect to ip, and otherwise an error wrapping
// ErrForbiddenAddress that names ip and the range it falls in.
func (p *Policy) Check(ip netip.Addr) error {
	if !ip.IsValid() {
		return fmt.Errorf("%w: invalid IP address", ErrForbiddenAddress)
	}
	orig := ip
	ip = ip.WithZone("").Unmap()
	if p.allowed(ip) {
		return nil
	}
	if nat64.Contains(ip) {
		b := ip.As16()
		v4 := netip.AddrFrom4([4]byte(b[12:]))
		if err := p.Check(v4); err != nil {
			return fmt.Errorf("%w: %s is NAT64 for %s, which is refused; add it to AllowCIDRs to allow it", ErrForbiddenAddress, orig, v4)
		}
		return nil
	}
	for _, r := range blockedRanges {
		if r.prefix.Contains(ip) {
			return fmt.Errorf("%w: %s is %s (%s); add it to AllowCIDRs to allow it", ErrForbiddenAddress, orig, r.what, r.prefix)
		}
	}
	if !ip.IsGlobalUnicast() {
		return fmt.Errorf("%w: %s is not global unicast; add it to AllowCIDRs to allow it", ErrForbiddenAddress, orig)
	}
	return nil
}

func (p *Policy) allowed(ip netip.Addr) bool {
	for _, pre := range p.Allow {
		if pre.Contains(ip) {
			return true
		}
	}
	return false
}

// control is a net.Dialer.ControlContext hook: it runs after the name was resolved and the socket
// created, just before connect, with the numeric address about to be dialed.
func (p *Policy) control(_ context.Context, _, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: cannot parse the dialed address %q: %w", ErrForbiddenAddress, address, err)
	}
	return p.Check(ap.Addr())
}
