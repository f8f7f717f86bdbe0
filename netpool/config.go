package netpool

import (
	"fmt"
	"net/netip"
	"net/url"
	"time"
)

// Config configures a Pool. The zero value of every field means its default, so Config{} is valid.
type Config struct {
	// EgressIPs is the default pool: the local addresses deliveries leave from. Empty lets the kernel
	// choose the source address (no static egress).
	EgressIPs []netip.Addr
	// Pools are named egress pools an endpoint may select with Request.EgressPool. A name may not be
	// empty (that is the default pool) and a pool may not be empty.
	Pools map[string][]netip.Addr

	// MaxIdleConnsPerHost caps idle keep-alive connections per (egress IP, destination). Default 64.
	MaxIdleConnsPerHost int
	// MaxConnsPerHost caps all connections per (egress IP, destination); 0 is unlimited, the default,
	// because the dispatcher already bounds in-flight attempts per endpoint.
	MaxConnsPerHost int
	// IdleConnTimeout closes keep-alive connections idle for this long. Default 90s.
	IdleConnTimeout time.Duration
	// DialTimeout bounds TCP connect and the TLS handshake. Dials outlive the request that started
	// them (net/http keeps them for the next request), so this, not Request.Timeout, bounds a dial.
	// Default 10s.
	DialTimeout time.Duration
	// DefaultTimeout is the whole-attempt timeout used when Request.Timeout is 0. Default 30s.
	DefaultTimeout time.Duration
	// KeepBodyBytes is how many response body bytes are kept for the attempt log. Default 64 KiB.
	KeepBodyBytes int
	// DrainBodyBytes is how many bytes beyond KeepBodyBytes are read and discarded so the connection
	// can be reused; a longer body makes Do drop the connection instead. Default 256 KiB.
	DrainBodyBytes int64
	// UserAgent is sent when Request.Header has no User-Agent. Default "Sluice".
	UserAgent string

	// BlockPrivate turns on the SSRF guard (see Policy): connections to loopback, private, link-local,
	// CGNAT, multicast, unspecified and other non-global addresses are refused at dial time, after DNS
	// resolution, with an error wrapping ErrForbiddenAddress. Off by default in the library, so tests
	// can deliver to 127.0.0.1; the binary turns it on.
	BlockPrivate bool
	// AllowCIDRs opens ranges the guard would refuse (e.g. 127.0.0.0/8, or an internal receiver's
	// subnet). Setting it without BlockPrivate is a config error.
	AllowCIDRs []netip.Prefix
	// Proxy, when set, is the forward proxy (http or https URL, user:password@ for basic proxy
	// authentication) every request goes through unless Request.Proxy names another. https
	// destinations are tunnelled with CONNECT; http destinations are sent to the proxy in absolute
	// form. The proxy is operator-configured and trusted: the guard does not check its address, and
	// the proxy resolves the destination's name, so with BlockPrivate only IP-literal destinations are
	// checked here; the proxy must enforce its own egress policy (see the package documentation). The
	// environment's HTTP(S)_PROXY is never used.
	Proxy *url.URL

	// StdlibHTTP1 sends plain-http attempts through net/http too. By default an http:// attempt
	// without a proxy goes through netpool's lean HTTP/1.1 client (about a third of net/http's client
	// CPU per attempt; see the package documentation); https, proxied attempts and attempts with
	// Request.TLS always use net/http. This is the escape hatch, and the A/B switch for measuring.
	StdlibHTTP1 bool
}

// Defaults, exported through DefaultConfig.
const (
	defaultMaxIdleConnsPerHost = 64
	defaultIdleConnTimeout     = 90 * time.Second
	defaultDialTimeout         = 10 * time.Second
	defaultTimeout             = 30 * time.Second
	defaultKeepBodyBytes       = 64 << 10
	defaultDrainBodyBytes      = 256 << 10
	defaultUserAgent           = "Sluice"
)

// DefaultConfig returns a Config with every default filled in and no static egress.
func DefaultConfig() Config {
	return Config{
		MaxIdleConnsPerHost: defaultMaxIdleConnsPerHost,
		IdleConnTimeout:     defaultIdleConnTimeout,
		DialTimeout:         defaultDialTimeout,
		DefaultTimeout:      defaultTimeout,
		KeepBodyBytes:       defaultKeepBodyBytes,
		DrainBodyBytes:      defaultDrainBodyBytes,
		UserAgent:           defaultUserAgent,
	}
}

// Validate fills zero fields with their defaults and reports the first invalid field. It does not
// modify the EgressIPs or Pools slices.
func (c *Config) Validate() error {
	if err := checkIPs("EgressIPs", c.EgressIPs); err != nil {
		return err
	}
	for name, ips := range c.Pools {
		field := fmt.Sprintf("Pools[%q]", name)
		if name == "" {
			return fmt.Errorf("%w: %s: the empty name is the default pool, use EgressIPs", ErrConfig, field)
		}
		if len(ips) == 0 {
			return fmt.Errorf("%w: %s: no addresses", ErrConfig, field)
		}
		if err := checkIPs(field, ips); err != nil {
			return err
		}
	}

	// Negative values are errors rather than "default" so a sign slip in a config file is loud.
	if err := fill(&c.MaxIdleConnsPerHost, defaultMaxIdleConnsPerHost, "MaxIdleConnsPerHost"); err != nil {
		return err
	}
	if c.MaxConnsPerHost < 0 {
		return fmt.Errorf("%w: MaxConnsPerHost %d is negative", ErrConfig, c.MaxConnsPerHost)
	}
	if err := fill(&c.IdleConnTimeout, defaultIdleConnTimeout, "IdleConnTimeout"); err != nil {
		return err
	}
	if err := fill(&c.DialTimeout, defaultDialTimeout, "DialTimeout"); err != nil {
		return err
	}
	if err := fill(&c.DefaultTimeout, defaultTimeout, "DefaultTimeout"); err != nil {
		return err
	}
	if err := fill(&c.KeepBodyBytes, defaultKeepBodyBytes, "KeepBodyBytes"); err != nil {
		return err
	}
	if err := fill(&c.DrainBodyBytes, defaultDrainBodyBytes, "DrainBodyBytes"); err != nil {
		return err
	}
	if c.UserAgent == "" {
		c.UserAgent = defaultUserAgent
	}
	for i, pre := range c.AllowCIDRs {
		if !pre.IsValid() {
			return fmt.Errorf("%w: AllowCIDRs[%d] is not a valid prefix", ErrConfig, i)
		}
	}
	if len(c.AllowCIDRs) > 0 && !c.BlockPrivate {
		return fmt.Errorf("%w: AllowCIDRs is set but BlockPrivate is off, so nothing is blocked", ErrConfig)
	}
	if c.Proxy != nil {
		if err := checkProxy(c.Proxy); err != nil {
			return fmt.Errorf("%w: Proxy: %w", ErrConfig, err)
		}
	}
	return nil
}

// checkProxy reports why u cannot be a forward proxy URL.
func checkProxy(u *url.URL) error {
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%s: want an http:// or https:// proxy URL with a host", u.Redacted())
	}
	return nil
}

func fill[T int | int64 | time.Duration](v *T, def T, field string) error {
	switch {
	case *v < 0:
		return fmt.Errorf("%w: %s %v is negative", ErrConfig, field, *v)
	case *v == 0:
		*v = def
	}
	return nil
}

func checkIPs(field string, ips []netip.Addr) error {
	seen := make(map[netip.Addr]bool, len(ips))
	for i, ip := range ips {
		switch {
		case !ip.IsValid():
			return fmt.Errorf("%w: %s[%d] is the zero address", ErrConfig, field, i)
		case ip.IsUnspecified():
			// Binding 0.0.0.0 is the kernel's choice in disguise; say so with an empty list instead.
			return fmt.Errorf("%w: %s[%d] %s is unspecified; leave the list empty for the system's choice", ErrConfig, field, i, ip)
		case seen[ip.Unmap()]:
			return fmt.Errorf("%w: %s[%d] %s is listed twice", ErrConfig, field, i, ip)
		}
		seen[ip.Unmap()] = true
	}
	return nil
}
