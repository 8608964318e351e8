package targets

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"
)

// CodeInvalidTargetURL is the Code of every *Error Validate returns; the management API
// answers it as is.
const CodeInvalidTargetURL = "invalid_target_url"

// MaxURLLength is the longest target URL accepted, in characters.
const MaxURLLength = 2048

// lookupTimeout bounds the DNS lookup of one Validate call when ctx has no earlier deadline.
const lookupTimeout = 5 * time.Second

// Error is why a target URL was refused. Message is meant for the API caller: it names the
// problem but never includes anything the caller did not send.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message }

func invalid(format string, args ...any) *Error {
	return &Error{Code: CodeInvalidTargetURL, Message: fmt.Sprintf(format, args...)}
}

// ErrPrivateAddress is wrapped by the error DialControl returns for a refused address, so the
// deliverer can tell a refused connection from a network failure with errors.Is.
var ErrPrivateAddress = errors.New("private address refused")

// Resolver looks up a host's addresses. *net.Resolver satisfies it; tests pass a fake.
type Resolver interface {
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

var _ Resolver = (*net.Resolver)(nil)

// Policy is what target URLs may be. The zero value is the strict default: https only, public
// addresses only, resolved with net.DefaultResolver.
type Policy struct {
	// AllowHTTP accepts http:// URLs besides https:// (RELAY_ALLOW_HTTP). Optional.
	AllowHTTP bool
	// AllowPrivate accepts every address, private ones included, and skips DNS lookups in
	// Validate (RELAY_ALLOW_PRIVATE_TARGETS). Optional; for development and tests.
	AllowPrivate bool
	// AllowCIDRs admits the private addresses inside these prefixes
	// (RELAY_ALLOW_PRIVATE_CIDRS). Optional. Each must have passed CheckAllowedCIDR: a prefix
	// that overlaps a never-admitted range (loopback, link-local, metadata...) is not
	// expected here, and the addresses of such ranges stay refused anyway.
	AllowCIDRs []netip.Prefix
	// NoLookup skips the DNS lookup of Validate, which still refuses private IP literals and
	// localhost names (RELAY_EGRESS_PROXY_ENFORCES_SSRF: the egress proxy resolves target
	// names and refuses private addresses, so the relay's own DNS has no say). Optional.
	NoLookup bool
	// Resolver resolves names in Validate. Optional: nil means net.DefaultResolver.
	Resolver Resolver
}

func (p Policy) resolver() Resolver {
	if p.Resolver == nil {
		return net.DefaultResolver
	}
	return p.Resolver
}

// Validate reports whether raw may be a subscription's target URL. It returns nil or an
// *Error with Code CodeInvalidTargetURL; see the package documentation for the rules. Unless
// AllowPrivate, it resolves the host with p's Resolver, within ctx and at most 5 seconds.
func (p Policy) Validate(ctx context.Context, raw string) error {
	host, err := p.checkSyntax(raw)
	if err != nil {
		return err
	}
	if ip, perr := netip.ParseAddr(host); perr == nil {
		if ip.Zone() != "" {
			return invalid("target URL must not use an IPv6 zone")
		}
		if !p.Permits(ip) {
			return invalid("target URL host %s is a private, loopback or reserved address%s", ip, p.notAdmitted())
		}
		return nil
	}
	name, err := checkName(host)
	if err != nil {
		return err
	}
	if p.AllowPrivate {
		return nil
	}
	if name == "localhost" || strings.HasSuffix(name, ".localhost") {
		return invalid("target URL host %q is a loopback name", name)
	}
	if p.NoLookup {
		return nil
	}
	return p.checkResolved(ctx, name)
}

// checkSyntax checks everything that needs no DNS and answers the URL's host, without the
// brackets of an IPv6 literal.
func (p Policy) checkSyntax(raw string) (string, error) {
	if raw == "" {
		return "", invalid("target URL is empty")
	}
	if n := utf8.RuneCountInString(raw); n > MaxURLLength {
		return "", invalid("target URL is %d characters long, the limit is %d", n, MaxURLLength)
	}
	if strings.IndexFunc(raw, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return "", invalid("target URL must not contain spaces or control characters")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", invalid("target URL is not a valid URL")
	}
	scheme := strings.ToLower(u.Scheme)
	switch {
	case scheme == "":
		return "", invalid("target URL must be absolute (https://...)")
	case scheme == "http" && !p.AllowHTTP:
		return "", invalid("target URL must use https (http is not enabled on this relay)")
	case scheme != "https" && scheme != "http":
		if p.AllowHTTP {
			return "", invalid("target URL scheme must be https or http")
		}
		return "", invalid("target URL scheme must be https")
	}
	if u.Opaque != "" {
		return "", invalid("target URL must have the form %s://host/path", scheme)
	}
	if u.User != nil {
		return "", invalid("target URL must not contain user info")
	}
	host := u.Hostname()
	if host == "" {
		return "", invalid("target URL has no host")
	}
	if port := u.Port(); port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return "", invalid("target URL port must be between 1 and 65535")
		}
	}
	return host, nil
}

// checkName checks that host is a plain ASCII DNS name that cannot be read as an IPv4
// address, and answers it in lower case without a trailing dot.
func checkName(host string) (string, error) {
	name := strings.ToLower(strings.TrimSuffix(host, "."))
	if name == "" || len(name) > 253 {
		return "", invalid("target URL host is not a valid host name")
	}
	labels := strings.Split(name, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return "", invalid("target URL host %q is not a valid host name", host)
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if c >= utf8.RuneSelf {
				return "", invalid("target URL host must be ASCII; give an international name in its xn-- form")
			}
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", invalid("target URL host %q is not a valid host name", host)
			}
		}
	}
	if numericLabel(labels[len(labels)-1]) {
		return "", invalid("target URL host %q looks like an IPv4 address in a non-standard form; write it as a.b.c.d", host)
	}
	return name, nil
}

// numericLabel reports whether a last label makes a host an IPv4 address to a URL parser
// (WHATWG "ends in a number"): all decimal digits, or 0x followed by hex digits.
func numericLabel(l string) bool {
	if rest, ok := strings.CutPrefix(l, "0x"); ok {
		return strings.Trim(rest, "0123456789abcdef") == ""
	}
	return strings.Trim(l, "0123456789") == ""
}

func (p Policy) checkResolved(ctx context.Context, name string) error {
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	addrs, err := p.resolver().LookupIPAddr(ctx, name)
	if err != nil {
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) && !dnsErr.IsNotFound {
			return invalid("target URL host %q could not be resolved, try again later", name)
		}
		return invalid("target URL host %q does not resolve", name)
	}
	if len(addrs) == 0 {
		return invalid("target URL host %q does not resolve", name)
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || !p.Permits(ip) {
			return invalid("target URL host %q resolves to a private, loopback or reserved address (%s)%s", name, a.IP, p.notAdmitted())
		}
	}
	return nil
}

// DialControl refuses a connection to an address p does not permit (see Permits). Install it
// as net.Dialer.Control: it then sees the resolved address of every connection, so DNS
// rebinding cannot reach what Validate refused. The error wraps ErrPrivateAddress and reads
// "connection to private address X refused".
func (p Policy) DialControl(network, address string, _ syscall.RawConn) error {
	if p.AllowPrivate {
		return nil
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		// Only IP networks are expected here; anything else is refused rather than guessed.
		return &dialError{addr: address}
	}
	return p.Check(ap.Addr())
}

// Check answers nil when p permits ip, else the error DialControl would: it wraps
// ErrPrivateAddress and reads "connection to private address X refused". For guards that
// resolve a name themselves before they connect, such as the egress proxy's dialer.
func (p Policy) Check(ip netip.Addr) error {
	if !p.Permits(ip) {
		return &dialError{addr: ip.String()}
	}
	return nil
}

// Permits reports whether p lets the relay connect to ip: always with AllowPrivate, else when
// ip is public (IsPrivate is false) or lies in one of AllowCIDRs and in no never-admitted
// range (see NeverAdmitted).
func (p Policy) Permits(ip netip.Addr) bool {
	if p.AllowPrivate || !IsPrivate(ip) {
		return true
	}
	return p.admits(ip)
}

// admits reports whether a private ip is admitted by AllowCIDRs.
func (p Policy) admits(ip netip.Addr) bool {
	if len(p.AllowCIDRs) == 0 || !ip.IsValid() {
		return false
	}
	ip = ip.WithZone("").Unmap()
	for _, n := range neverAdmitted {
		if n.Contains(ip) {
			return false
		}
	}
	if ip.Is6() {
		// An ISATAP identifier under an admitted IPv6 prefix reaches the IPv4 address it
		// carries: that address must be permitted on its own.
		if b := ip.As16(); isISATAP(b) && !p.Permits(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})) {
			return false
		}
	}
	for _, c := range p.AllowCIDRs {
		if c.Contains(ip) {
			return true
		}
	}
	return false
}

// notAdmitted is the tail of a refusal when private ranges are admitted, so that the caller
// learns the address is not among them.
func (p Policy) notAdmitted() string {
	if len(p.AllowCIDRs) == 0 {
		return ""
	}
	return " outside the private ranges this relay admits"
}

// neverAdmitted are the ranges no allowed CIDR opens: the relay host itself (loopback, "this
// network", unspecified), link-local (where the cloud metadata services answer), the other
// metadata addresses, multicast and reserved space, and the IPv6 forms that carry an IPv4
// address another host translates (which would reach whatever IPv4 address they carry).
var neverAdmitted = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8",          // "this network"; 0.0.0.0 reaches the local host
		"127.0.0.0/8",        // loopback
		"169.254.0.0/16",     // link-local; 169.254.169.254 is the usual metadata service
		"100.100.100.200/32", // Alibaba Cloud metadata
		"224.0.0.0/4",        // multicast
		"240.0.0.0/4",        // reserved, broadcast
		"::/96",              // unspecified, loopback, IPv4-compatible
		"::ffff:0:0/96",      // IPv4-mapped: written as IPv4 instead
		"::ffff:0:0:0/96",    // IPv4-translated (SIIT)
		"64:ff9b::/96",       // NAT64, well-known prefix
		"64:ff9b:1::/48",     // NAT64, local use
		"2001::/32",          // Teredo
		"2002::/16",          // 6to4
		"fe80::/10",          // link-local
		"fd00:ec2::254/128",  // AWS metadata (IPv6)
		"ff00::/8",           // multicast
	} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

// NeverAdmitted answers the ranges that stay refused whatever RELAY_ALLOW_PRIVATE_CIDRS
// says, as text, for documentation and error messages.
func NeverAdmitted() []string {
	out := make([]string, len(neverAdmitted))
	for i, n := range neverAdmitted {
		out[i] = n.String()
	}
	return out
}

// CheckAllowedCIDR parses one entry of RELAY_ALLOW_PRIVATE_CIDRS: a CIDR (an address alone
// is its /32 or /128) that overlaps no never-admitted range. Such a prefix is refused
// rather than admitted minus those ranges, so that what the operator wrote is what the relay
// does. The answer is masked: 10.20.1.5/16 becomes 10.20.0.0/16.
func CheckAllowedCIDR(s string) (netip.Prefix, error) {
	var pfx netip.Prefix
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR (want e.g. 10.20.0.0/16)", s)
		}
		pfx = p
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR (want e.g. 10.20.0.0/16)", s)
		}
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q must not have an IPv6 zone", s)
		}
		pfx = netip.PrefixFrom(a, a.BitLen())
	}
	pfx = pfx.Masked()
	for _, n := range neverAdmitted {
		if pfx.Overlaps(n) {
			return netip.Prefix{}, fmt.Errorf("%s overlaps %s, which stays refused (loopback, link-local, metadata, multicast or translated addresses); list narrower ranges", pfx, n)
		}
	}
	return pfx, nil
}

type dialError struct{ addr string }

func (e *dialError) Error() string        { return "connection to private address " + e.addr + " refused" }
func (e *dialError) Is(target error) bool { return target == ErrPrivateAddress }

// privatePrefixes are the ranges IsPrivate refuses outright, once an IPv4-mapped address has
// been unmapped. IPv6 outside 2000::/3 is refused before this list is read (see IsPrivate),
// so only the special ranges inside it are listed for IPv6.
var privatePrefixes = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{
		// IPv4
		"0.0.0.0/8",       // "this network"; 0.0.0.0 reaches the local host
		"10.0.0.0/8",      // RFC 1918
		"100.64.0.0/10",   // CGNAT; includes 100.100.100.200 (Alibaba Cloud metadata)
		"127.0.0.0/8",     // loopback
		"169.254.0.0/16",  // link-local; includes 169.254.169.254 (cloud metadata)
		"172.16.0.0/12",   // RFC 1918
		"192.0.0.0/24",    // IETF protocol assignments
		"192.0.2.0/24",    // documentation
		"192.168.0.0/16",  // RFC 1918
		"198.18.0.0/15",   // benchmarking
		"198.51.100.0/24", // documentation
		"203.0.113.0/24",  // documentation
		"224.0.0.0/4",     // multicast
		"240.0.0.0/4",     // reserved, and 255.255.255.255 broadcast
		// IPv6, inside 2000::/3
		"2001::/32",     // Teredo: its client and server IPv4 addresses are obfuscated, not judged
		"2001:2::/48",   // benchmarking
		"2001:db8::/32", // documentation
		"3fff::/20",     // documentation
	} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

var (
	// globalUnicast6 is the only IPv6 space IANA allocates for global unicast. Everything
	// outside it is refused, except the NAT64 prefix below: unspecified, loopback, the
	// IPv4-compatible ::/96 and IPv4-translated ::ffff:0:0:0/96 forms, local-use NAT64
	// 64:ff9b:1::/48, discard-only 100::/64, unique local fc00::/7 (fd00:ec2::254, the AWS
	// metadata address, is one), link-local, site-local and multicast, and whatever a future
	// special range in that space might be.
	globalUnicast6 = netip.MustParsePrefix("2000::/3")
	nat64Prefix    = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour      = netip.MustParsePrefix("2002::/16")
)

// IsPrivate reports whether ip is anything but a globally reachable unicast address: see the
// package documentation for the list. An invalid ip is private.
func IsPrivate(ip netip.Addr) bool {
	if !ip.IsValid() {
		return true
	}
	ip = ip.WithZone("").Unmap()
	if ip.Is6() {
		b := ip.As16()
		switch {
		case nat64Prefix.Contains(ip):
			return IsPrivate(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}))
		case !globalUnicast6.Contains(ip):
			return true
		case isISATAP(b) && IsPrivate(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})):
			return true
		case sixToFour.Contains(ip):
			return IsPrivate(netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}))
		}
	}
	if ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() {
		return true
	}
	for _, p := range privatePrefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// isISATAP reports whether an IPv6 address has an ISATAP interface identifier (RFC 5214:
// 0000:5efe or 0200:5efe, then an IPv4 address). Inside a site that runs an ISATAP router,
// such an address under the site's own prefix reaches the embedded IPv4 address, so that
// address must be public too.
func isISATAP(b [16]byte) bool {
	return b[8]&^0x02 == 0 && b[9] == 0 && b[10] == 0x5e && b[11] == 0xfe
}
