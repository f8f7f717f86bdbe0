package netpool

import (
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
)

// TestPolicy checks the guard's verdict on addresses without dialing anything.
func TestPolicy(t *testing.T) {
	deny := &Policy{}
	allowLoop := &Policy{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}}
	tests := []struct {
		ip     string
		policy *Policy
		ok     bool
		what   string // in the error
	}{
		// IPv4 global unicast.
		{"8.8.8.8", deny, true, ""},
		{"1.1.1.1", deny, true, ""},
		{"172.32.0.1", deny, true, ""},  // just past 172.16.0.0/12
		{"100.128.0.1", deny, true, ""}, // just past 100.64.0.0/10
		{"11.0.0.1", deny, true, ""},
		// IPv4 refused.
		{"127.0.0.1", deny, false, "loopback"},
		{"127.255.255.254", deny, false, "loopback"},
		{"10.1.2.3", deny, false, "private"},
		{"172.16.0.1", deny, false, "private"},
		{"172.31.255.255", deny, false, "private"},
		{"192.168.1.1", deny, false, "private"},
		{"169.254.169.254", deny, false, "link-local"}, // cloud metadata
		{"100.64.0.1", deny, false, "CGNAT"},
		{"0.0.0.0", deny, false, "this network"},
		{"0.1.2.3", deny, false, "this network"},
		{"224.0.0.1", deny, false, "multicast"},
		{"239.255.255.250", deny, false, "multicast"},
		{"255.255.255.255", deny, false, "reserved"},
		{"240.0.0.1", deny, false, "reserved"},
		{"192.0.2.1", deny, false, "documentation"},
		{"198.18.0.1", deny, false, "benchmarking"},
		{"192.0.0.8", deny, false, "IETF"},
		// IPv6 global unicast.
		{"2606:4700:4700::1111", deny, true, ""},
		{"2a00:1450:4001:81c::200e", deny, true, ""},
		// IPv6 refused.
		{"::1", deny, false, "loopback"},
		{"::", deny, false, "unspecified"},
		{"fe80::1", deny, false, "link-local"},
		{"fe80::1%eth0", deny, false, "link-local"},
		{"fc00::1", deny, false, "unique local"},
		{"fd12:3456:789a::1", deny, false, "unique local"},
		{"fec0::1", deny, false, "site-local"},
		{"ff02::1", deny, false, "multicast"},
		{"ff0e::1", deny, false, "multicast"},
		{"2001:db8::1", deny, false, "documentation"},
		{"2001::1", deny, false, "IETF"}, // Teredo
		{"2002:7f00:1::1", deny, false, "6to4"},
		{"100::1", deny, false, "discard"},
		{"::127.0.0.1", deny, false, "IPv4-compatible"},
		// IPv4-mapped IPv6 is judged as the IPv4 address.
		{"::ffff:127.0.0.1", deny, false, "loopback"},
		{"::ffff:10.0.0.1", deny, false, "private"},
		{"::ffff:169.254.169.254", deny, false, "link-local"},
		{"::ffff:8.8.8.8", deny, true, ""},
		// NAT64 is judged by the embedded IPv4 address.
		{"64:ff9b::7f00:1", deny, false, "NAT64 for 127.0.0.1"},
		{"64:ff9b::a9fe:a9fe", deny, false, "NAT64 for 169.254.169.254"},
		{"64:ff9b::808:808", deny, true, ""},
		{"64:ff9b:1::1", deny, false, "local-use NAT64"},
		// Allow opens ranges, in either IPv4 form, and nothing else.
		{"127.0.0.1", allowLoop, true, ""},
		{"127.1.2.3", allowLoop, true, ""},
		{"::ffff:127.0.0.1", allowLoop, true, ""},
		{"64:ff9b::7f00:1", allowLoop, true, ""},
		{"fd00::1", allowLoop, true, ""},
		{"::1", allowLoop, false, "loopback"},
		{"10.0.0.1", allowLoop, false, "private"},
		{"8.8.8.8", allowLoop, true, ""},
	}
	for _, tt := range tests {
		ip := netip.MustParseAddr(tt.ip)
		err := tt.policy.Check(ip)
		if tt.ok {
			if err != nil {
				t.Errorf("Check(%s) = %v, want allowed", tt.ip, err)
			}
			continue
		}
		if !errors.Is(err, ErrForbiddenAddress) {
			t.Errorf("Check(%s) = %v, want ErrForbiddenAddress", tt.ip, err)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, ip.String()) || !strings.Contains(msg, tt.what) {
			t.Errorf("Check(%s) = %q, want it to name the IP and %q", tt.ip, msg, tt.what)
		}
	}
	if err := deny.Check(netip.Addr{}); !errors.Is(err, ErrForbiddenAddress) {
		t.Errorf("Check(zero Addr) = %v, want ErrForbiddenAddress", err)
	}
}

// TestGuardAtDial sends to a sink on 127.0.0.1, by IP and through a name that resolves to it, with the
// guard off, on, and on with 127.0.0.0/8 allowed: the guard refuses at dial time, before anything is
// sent, and names the IP.
func TestGuardAtDial(t *testing.T) {
	srv, cc := newSink(t, http.HandlerFunc(remoteIP))
	byIP := srv.URL
	byName := "http://localhost:" + strconv.Itoa(srv.Listener.Addr().(*net.TCPAddr).Port)
	loop := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

	off := newPool(t, Config{})
	on := newPool(t, Config{BlockPrivate: true})
	allowed := newPool(t, Config{BlockPrivate: true, AllowCIDRs: loop})
	allowedEgress := newPool(t, Config{BlockPrivate: true, AllowCIDRs: loop, EgressIPs: []netip.Addr{ip2}})

	for _, url := range []string{byIP, byName} {
		for _, p := range []*Pool{off, allowed} {
			if res := do(t, p, &Request{URL: url}); res.Err != nil || res.StatusCode != 200 {
				t.Fatalf("%s: status %d err %v, want 200", url, res.StatusCode, res.Err)
			}
		}
		before := cc.count()
		res := do(t, on, &Request{URL: url})
		t.Logf("guarded %s: %v", url, res.Err)
		if !errors.Is(res.Err, ErrForbiddenAddress) || !errors.Is(res.Err, ErrConnect) || res.StatusCode != 0 {
			t.Fatalf("%s with the guard on: status %d err %v, want ErrForbiddenAddress and ErrConnect", url, res.StatusCode, res.Err)
		}
		if msg := res.Err.Error(); !strings.Contains(msg, "127.0.0.1") && !strings.Contains(msg, "::1") {
			t.Fatalf("error %q does not name the refused IP", msg)
		}
		if res.EgressIP != "" {
			t.Fatalf("EgressIP %q: no connection should have been made", res.EgressIP)
		}
		if got := cc.count(); got != before {
			t.Fatalf("the sink saw %d new connections through the guard", got-before)
		}
	}
	res := do(t, allowedEgress, &Request{URL: byIP})
	if res.Err != nil || string(res.Body) != "127.0.0.2" {
		t.Fatalf("guard with an egress IP: body %q err %v, want 127.0.0.2", res.Body, res.Err)
	}
}

func TestGuardConfig(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  Config
	}{
		{"AllowCIDRs without BlockPrivate", Config{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}},
		{"zero prefix", Config{BlockPrivate: true, AllowCIDRs: []netip.Prefix{{}}}},
	} {
		if _, err := New(tt.cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: New = %v, want ErrConfig", tt.name, err)
		}
	}
	// An unmasked prefix is accepted and masked.
	p := newPool(t, Config{BlockPrivate: true, AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.2.3/8")}})
	if err := p.guard.Check(netip.MustParseAddr("10.200.0.1")); err != nil {
		t.Errorf("10.1.2.3/8 should open 10.0.0.0/8: %v", err)
	}
}
