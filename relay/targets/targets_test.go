package targets_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/relay/targets"
)

// fakeResolver answers from a fixed table; an unknown name does not exist.
type fakeResolver map[string][]string

func (f fakeResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	addrs, ok := f[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	if addrs == nil {
		return nil, &net.DNSError{Err: "i/o timeout", Name: host, IsTimeout: true}
	}
	out := make([]net.IPAddr, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, net.IPAddr{IP: net.ParseIP(a)})
	}
	return out, nil
}

var _ targets.Resolver = fakeResolver(nil)

var resolver = fakeResolver{
	"hooks.example.com":   {"93.184.216.34"},
	"v6.example.com":      {"2606:2800:220:1:248:1893:25c8:1946"},
	"mixed.example.com":   {"93.184.216.34", "10.0.0.7"},
	"internal.example":    {"10.1.2.3"},
	"rebind.example.com":  {"127.0.0.1"},
	"metadata.example":    {"169.254.169.254"},
	"mapped.example":      {"::ffff:192.168.1.1"},
	"ula.example":         {"fd00:ec2::254"},
	"translated.example":  {"::ffff:0:169.254.169.254"},
	"empty.example.com":   {},
	"timeout.example.com": nil,
}

func TestValidate(t *testing.T) {
	t.Parallel()

	strict := targets.Policy{Resolver: resolver}
	withHTTP := targets.Policy{AllowHTTP: true, Resolver: resolver}
	private := targets.Policy{AllowPrivate: true, Resolver: resolver}
	long := "https://hooks.example.com/" + strings.Repeat("a", targets.MaxURLLength-len("https://hooks.example.com/"))

	tests := []struct {
		name    string
		policy  targets.Policy
		url     string
		wantErr string // substring of the message; empty means accepted
	}{
		// Syntax.
		{"HTTPSPublicName", strict, "https://hooks.example.com/webhooks?x=1", ""},
		{"UpperCaseScheme", strict, "HTTPS://HOOKS.EXAMPLE.COM/x", ""},
		{"TrailingDot", strict, "https://hooks.example.com./x", ""},
		{"Port", strict, "https://hooks.example.com:8443/x", ""},
		{"FragmentAllowed", strict, "https://hooks.example.com/x#frag", ""},
		{"IPv6Name", strict, "https://v6.example.com/", ""},
		{"PublicIPv4Literal", strict, "https://93.184.216.34/hook", ""},
		{"PublicIPv6Literal", strict, "https://[2606:2800:220:1:248:1893:25c8:1946]/hook", ""},
		{"ExactlyMaxLength", strict, long, ""},
		{"Empty", strict, "", "empty"},
		{"TooLong", strict, long + "a", "2049 characters long"},
		{"Relative", strict, "/webhooks", "absolute"},
		{"SchemeRelative", strict, "//hooks.example.com/x", "absolute"},
		{"NoScheme", strict, "hooks.example.com/x", "absolute"},
		{"HTTPRefused", strict, "http://hooks.example.com/", "must use https"},
		{"HTTPAllowed", withHTTP, "http://hooks.example.com/", ""},
		{"FTP", strict, "ftp://hooks.example.com/", "scheme must be https"},
		{"FTPWithHTTP", withHTTP, "ftp://hooks.example.com/", "https or http"},
		{"JavaScript", strict, "javascript:alert(1)", "scheme must be https"},
		{"Opaque", strict, "https:hooks.example.com", "form https://host/path"},
		{"UserInfo", strict, "https://user:pass@hooks.example.com/", "user info"},
		{"UserOnly", strict, "https://user@hooks.example.com/", "user info"},
		{"NoHost", strict, "https:///path", "no host"},
		{"PortOnly", strict, "https://:443/path", "no host"},
		{"PortZero", strict, "https://hooks.example.com:0/", "port"},
		{"PortTooLarge", strict, "https://hooks.example.com:65536/", "port"},
		{"Space", strict, "https://hooks.example.com/a b", "spaces"},
		{"LeadingSpace", strict, " https://hooks.example.com/", "spaces"},
		{"NewLine", strict, "https://hooks.example.com/\n", "spaces"},
		{"NotAURL", strict, "https://[::1", "not a valid URL"},
		{"BadHostChars", strict, "https://hooks!.example.com/", "not a valid host name"},
		{"EmptyLabel", strict, "https://hooks..example.com/", "not a valid host name"},
		{"LongLabel", strict, "https://" + strings.Repeat("a", 64) + ".example.com/", "not a valid host name"},
		{"NonASCII", strict, "https://hôoks.example.com/", "xn--"},

		// Names that are IPv4 addresses to someone.
		{"Decimal", strict, "https://2130706433/", "non-standard form"},
		{"DecimalAllowPrivate", private, "https://2130706433/", "non-standard form"},
		{"Shorthand", strict, "https://127.1/", "non-standard form"},
		{"Hex", strict, "https://0x7f000001/", "non-standard form"},
		{"HexParts", strict, "https://0x7f.1/", "non-standard form"},
		{"Octal", strict, "https://0177.0.0.1/", "non-standard form"},
		{"LeadingZeros", strict, "https://127.000.000.001/", "non-standard form"},
		{"HexLookingButName", strict, "https://0x7f.example.com/", "does not resolve"},

		// Loopback names and literals.
		{"Localhost", strict, "https://localhost/", "loopback name"},
		{"LocalhostUpper", strict, "https://LOCALHOST:8080/", "loopback name"},
		{"LocalhostDot", strict, "https://localhost./", "loopback name"},
		{"SubLocalhost", strict, "https://api.localhost/", "loopback name"},
		{"LocalhostAllowed", private, "https://localhost:8080/", ""},
		{"Loopback4", strict, "https://127.0.0.1/", "private"},
		{"Loopback4Other", strict, "https://127.8.9.10/", "private"},
		{"Loopback6", strict, "https://[::1]/", "private"},
		{"Loopback6Long", strict, "https://[0:0:0:0:0:0:0:1]/", "private"},
		{"LoopbackAllowed", private, "https://127.0.0.1:9000/", ""},

		// Every class of private literal.
		{"Unspecified4", strict, "https://0.0.0.0/", "private"},
		{"ThisNetwork", strict, "https://0.1.2.3/", "private"},
		{"Unspecified6", strict, "https://[::]/", "private"},
		{"RFC1918Ten", strict, "https://10.0.0.1/", "private"},
		{"RFC1918OneSevenTwo", strict, "https://172.16.5.4/", "private"},
		{"RFC1918OneSevenTwoTop", strict, "https://172.31.255.255/", "private"},
		{"NotRFC1918", strict, "https://172.32.0.1/", ""},
		{"RFC1918OneNineTwo", strict, "https://192.168.1.1/", "private"},
		{"ULA", strict, "https://[fd12:3456::1]/", "private"},
		{"ULAfc", strict, "https://[fc00::1]/", "private"},
		{"LinkLocal4", strict, "https://169.254.1.1/", "private"},
		{"LinkLocal6", strict, "https://[fe80::1]/", "private"},
		{"Zone", strict, "https://[fe80::1%25eth0]/", "zone"},
		{"ZoneAllowPrivate", private, "https://[fe80::1%25eth0]/", "zone"},
		{"SiteLocal6", strict, "https://[fec0::1]/", "private"},
		{"Multicast4", strict, "https://224.0.0.1/", "private"},
		{"Multicast4High", strict, "https://239.255.255.250/", "private"},
		{"Multicast6", strict, "https://[ff02::1]/", "private"},
		{"Broadcast", strict, "https://255.255.255.255/", "private"},
		{"Reserved", strict, "https://240.0.0.1/", "private"},
		{"CGNAT", strict, "https://100.64.0.1/", "private"},
		{"CGNATTop", strict, "https://100.127.255.255/", "private"},
		{"NotCGNAT", strict, "https://100.128.0.1/", ""},
		{"MetadataAWS", strict, "https://169.254.169.254/latest/meta-data/", "private"},
		{"MetadataAWS6", strict, "https://[fd00:ec2::254]/", "private"},
		{"MetadataAlibaba", strict, "https://100.100.100.200/", "private"},
		{"Benchmarking", strict, "https://198.18.0.1/", "private"},
		{"Documentation", strict, "https://192.0.2.1/", "private"},
		{"Mapped4Loopback", strict, "https://[::ffff:127.0.0.1]/", "private"},
		{"Mapped4Private", strict, "https://[::ffff:10.0.0.1]/", "private"},
		{"Mapped4Metadata", strict, "https://[::ffff:169.254.169.254]/", "private"},
		{"Mapped4Hex", strict, "https://[::ffff:7f00:1]/", "private"},
		{"Mapped4Public", strict, "https://[::ffff:93.184.216.34]/", ""},
		{"Compatible4", strict, "https://[::127.0.0.1]/", "private"},
		{"NAT64Loopback", strict, "https://[64:ff9b::7f00:1]/", "private"},
		{"NAT64Public", strict, "https://[64:ff9b::5db8:d822]/", ""},
		{"SixToFourPrivate", strict, "https://[2002:a00:1::1]/", "private"},
		{"Teredo", strict, "https://[2001:0:4136:e378::1]/", "private"},
		{"Translated4Loopback", strict, "https://[::ffff:0:127.0.0.1]/", "private"},
		{"Translated4Private", strict, "https://[::ffff:0:10.0.0.1]/", "private"},
		{"Translated4Metadata", strict, "https://[::ffff:0:169.254.169.254]/", "private"},
		{"Translated4Public", strict, "https://[::ffff:0:93.184.216.34]/", "private"},
		{"LocalUseNAT64", strict, "https://[64:ff9b:1::a00:1]/", "private"},
		{"ISATAPPrivate", strict, "https://[2606:2800:220:1:0:5efe:10.0.0.1]/", "private"},
		{"ISATAPPublic", strict, "https://[2606:2800:220:1:200:5efe:93.184.216.34]/", ""},

		// Resolution.
		{"ResolvesPrivate", strict, "https://internal.example/", "resolves to a private"},
		{"ResolvesLoopback", strict, "https://rebind.example.com/", "resolves to a private"},
		{"ResolvesMetadata", strict, "https://metadata.example/", "resolves to a private"},
		{"ResolvesMapped", strict, "https://mapped.example/", "resolves to a private"},
		{"ResolvesULA", strict, "https://ula.example/", "resolves to a private"},
		{"ResolvesTranslated", strict, "https://translated.example/", "resolves to a private"},
		{"OneOfManyPrivate", strict, "https://mixed.example.com/", "(10.0.0.7)"},
		{"ResolvesPrivateAllowed", private, "https://internal.example/", ""},
		{"DoesNotResolve", strict, "https://nowhere.example.com/", "does not resolve"},
		{"NoAddresses", strict, "https://empty.example.com/", "does not resolve"},
		{"LookupTimeout", strict, "https://timeout.example.com/", "could not be resolved"},
		{"DoesNotResolveAllowPrivate", private, "https://nowhere.example.com/", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.policy.Validate(context.Background(), tt.url)
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			var terr *targets.Error
			require.ErrorAs(t, err, &terr)
			require.Equal(t, targets.CodeInvalidTargetURL, terr.Code)
			require.Contains(t, terr.Message, tt.wantErr)
		})
	}
}

func TestValidateDefaultResolver(t *testing.T) {
	t.Parallel()
	// "localhost" never reaches DNS; an IP literal neither. Nothing here needs the network.
	err := targets.Policy{}.Validate(context.Background(), "https://127.0.0.1/")
	require.Error(t, err)
}

func TestValidateCancelledContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	slow := resolverFunc(func(ctx context.Context, host string) ([]net.IPAddr, error) {
		<-ctx.Done()
		return nil, &net.DNSError{Err: ctx.Err().Error(), Name: host}
	})
	err := targets.Policy{Resolver: slow}.Validate(ctx, "https://hooks.example.com/")
	require.ErrorContains(t, err, "could not be resolved")
}

type resolverFunc func(ctx context.Context, host string) ([]net.IPAddr, error)

func (f resolverFunc) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	return f(ctx, host)
}

func TestIsPrivate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		addr string
		want bool
	}{
		{"8.8.8.8", false},
		{"1.1.1.1", false},
		{"93.184.216.34", false},
		{"2606:4700:4700::1111", false},
		{"2a00:1450:4001:80b::200e", false},
		{"::ffff:8.8.8.8", false},
		{"64:ff9b::808:808", false},
		{"2002:808:808::1", false},
		{"127.0.0.1", true},
		{"127.255.255.255", true},
		{"0.0.0.0", true},
		{"10.255.255.255", true},
		{"172.16.0.0", true},
		{"192.168.0.1", true},
		{"169.254.169.254", true},
		{"100.64.0.0", true},
		{"100.100.100.200", true},
		{"224.0.0.251", true},
		{"255.255.255.255", true},
		{"::", true},
		{"::1", true},
		{"fe80::1", true},
		{"fe80::1%eth0", true},
		{"fc00::", true},
		{"fdff:ffff::1", true},
		{"fd00:ec2::254", true},
		{"ff05::2", true},
		{"::ffff:127.0.0.1", true},
		{"::ffff:0.0.0.0", true},
		{"::ffff:169.254.169.254", true},
		{"::ffff:100.100.100.200", true},
		{"::ffff:fd00:ec2", true}, // 253.0.14.194, in 240.0.0.0/4
		{"64:ff9b::a9fe:a9fe", true},
		{"64:ff9b:1::1", true},
		{"2002:7f00:1::", true},
		{"2001:db8::1", true},

		// IPv4-translated (RFC 2765), whatever it carries.
		{"::ffff:0:127.0.0.1", true},
		{"::ffff:0:10.0.0.1", true},
		{"::ffff:0:169.254.169.254", true},
		{"::ffff:0:7f00:1", true},
		{"::ffff:0:8.8.8.8", true},
		{"::ffff:0:0:0", true},
		// IPv4-compatible (deprecated), whatever it carries.
		{"::127.0.0.1", true},
		{"::8.8.8.8", true},
		// NAT64 well-known prefix: the IPv4 address it carries.
		{"64:ff9b::127.0.0.1", true},
		{"64:ff9b::10.0.0.1", true},
		{"64:ff9b::100.100.100.200", true},
		{"64:ff9b::8.8.8.8", false},
		// Local-use NAT64 and the rest of 64:ff9b::/32 outside the well-known /96.
		{"64:ff9b:1::8.8.8.8", true},
		{"64:ff9b::1:0:808:808", true},
		// 6to4: the IPv4 address in bits 16 to 47.
		{"2002:a9fe:a9fe::1", true},
		{"2002:a00:1::1", true},
		{"2002:c0a8:101::1", true},
		{"2002:5db8:d822::1", false},
		// Teredo, whatever it carries.
		{"2001:0:4136:e378:8000:63bf:3fff:fdd2", true},
		{"2001:0:5db8:d822::1", true},
		// ISATAP interface identifiers: the IPv4 address in the last 32 bits.
		{"2606:2800:220:1:0:5efe:127.0.0.1", true},
		{"2606:2800:220:1:200:5efe:169.254.169.254", true},
		{"2606:2800:220:1:200:5efe:93.184.216.34", false},
		// Outside 2000::/3: nothing there is global unicast.
		{"100::1", true},
		{"1234::1", true},
		{"4000::1", true},
		{"e000::1", true},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, targets.IsPrivate(netip.MustParseAddr(tt.addr)), tt.addr)
	}
	require.True(t, targets.IsPrivate(netip.Addr{}), "the zero Addr fails closed")
}

func TestDialControl(t *testing.T) {
	t.Parallel()
	strict := targets.Policy{}
	for _, addr := range []string{"127.0.0.1:443", "[::1]:443", "10.0.0.1:80", "[::ffff:169.254.169.254]:80", "[fe80::1%eth0]:443", "0.0.0.0:443"} {
		err := strict.DialControl("tcp", addr, nil)
		require.Error(t, err, addr)
		require.ErrorIs(t, err, targets.ErrPrivateAddress)
		require.True(t, strings.HasPrefix(err.Error(), "connection to private address "), err.Error())
		require.True(t, strings.HasSuffix(err.Error(), " refused"), err.Error())
	}
	require.EqualError(t, strict.DialControl("tcp4", "127.0.0.1:8080", nil), "connection to private address 127.0.0.1 refused")
	require.EqualError(t, strict.DialControl("tcp6", "[::ffff:10.0.0.1]:8080", nil), "connection to private address ::ffff:10.0.0.1 refused")
	for _, addr := range []string{"[::ffff:0:127.0.0.1]:443", "[::ffff:0:a00:1]:80", "[::ffff:0:169.254.169.254]:80", "[64:ff9b::a9fe:a9fe]:80", "[2002:7f00:1::1]:443"} {
		require.ErrorIs(t, strict.DialControl("tcp6", addr, nil), targets.ErrPrivateAddress, addr)
	}
	require.NoError(t, strict.DialControl("tcp4", "93.184.216.34:443", nil))
	require.NoError(t, strict.DialControl("tcp6", "[2606:2800:220:1:248:1893:25c8:1946]:443", nil))
	require.ErrorIs(t, strict.DialControl("unix", "/run/socket", nil), targets.ErrPrivateAddress, "fails closed")
	require.NoError(t, targets.Policy{AllowPrivate: true}.DialControl("tcp", "127.0.0.1:80", nil))
	require.False(t, errors.Is(errors.New("other"), targets.ErrPrivateAddress))
}

// TestDialControlRealDial proves the guard stops a real connection to a listener on
// loopback, which is what DNS rebinding would reach.
func TestDialControlRealDial(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })

	d := net.Dialer{Control: targets.Policy{}.DialControl}
	_, err = d.DialContext(context.Background(), "tcp", ln.Addr().String())
	require.ErrorIs(t, err, targets.ErrPrivateAddress)
	require.ErrorContains(t, err, "connection to private address 127.0.0.1 refused")

	d = net.Dialer{Control: targets.Policy{AllowPrivate: true}.DialControl}
	conn, err := d.DialContext(context.Background(), "tcp", ln.Addr().String())
	require.NoError(t, err)
	_ = conn.Close()
}

// TestAllowCIDRs: private addresses inside an admitted prefix are permitted, other private
// ones are not, public ones always are; the same verdict at validation and at dial time.
func TestAllowCIDRs(t *testing.T) {
	t.Parallel()
	var cidrs []netip.Prefix
	for _, s := range []string{"10.20.0.0/16", "192.168.7.0/24", "fd12:3456:789a::/48", "172.16.5.9"} {
		p, err := targets.CheckAllowedCIDR(s)
		require.NoError(t, err, s)
		cidrs = append(cidrs, p)
	}
	p := targets.Policy{AllowCIDRs: cidrs, Resolver: resolver}

	tests := []struct {
		addr string
		want bool
	}{
		{"10.20.0.1", true},
		{"10.20.255.254", true},
		{"::ffff:10.20.3.4", true}, // IPv4-mapped is the IPv4 address
		{"192.168.7.200", true},
		{"172.16.5.9", true},
		{"fd12:3456:789a:1::10", true},
		{"93.184.216.34", true}, // public: always
		{"10.21.0.1", false},
		{"10.0.0.1", false},
		{"192.168.8.1", false},
		{"172.16.5.10", false},
		{"fd12:3456:789b::1", false},
		{"127.0.0.1", false},
		{"169.254.169.254", false},
		{"fd00:ec2::254", false},
		{"::1", false},
		{"64:ff9b::a14:1", false},              // NAT64 of 10.20.0.1: translated elsewhere, refused
		{"fd12:3456:789a::5efe:7f00:1", false}, // ISATAP carrying 127.0.0.1 under an admitted prefix
		{"fd12:3456:789a::5efe:a14:1", true},   // ISATAP carrying 10.20.0.1, admitted too
		{"fd12:3456:789a::5efe:a15:1", false},  // ISATAP carrying 10.21.0.1, not admitted
	}
	for _, tt := range tests {
		ip := netip.MustParseAddr(tt.addr)
		require.Equal(t, tt.want, p.Permits(ip), tt.addr)
		dial := p.DialControl("tcp", netip.AddrPortFrom(ip, 443).String(), nil)
		valid := p.Validate(context.Background(), "https://"+netip.AddrPortFrom(ip, 443).String()+"/hook")
		if tt.want {
			require.NoError(t, dial, tt.addr)
			require.NoError(t, valid, tt.addr)
		} else {
			require.ErrorIs(t, dial, targets.ErrPrivateAddress, tt.addr)
			require.ErrorContains(t, valid, "outside the private ranges this relay admits", tt.addr)
		}
	}

	// Names are judged by every address they resolve to.
	require.NoError(t, targets.Policy{AllowCIDRs: cidrs, Resolver: fakeResolver{"svc.internal": {"10.20.0.9"}}}.
		Validate(context.Background(), "https://svc.internal/hook"))
	require.ErrorContains(t, p.Validate(context.Background(), "https://internal.example/hook"), "resolves to a private")
	require.ErrorContains(t, p.Validate(context.Background(), "https://localhost/hook"), "loopback name")
}

func TestCheckAllowedCIDR(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"10.20.0.0/16":   "10.20.0.0/16",
		"10.20.1.5/16":   "10.20.0.0/16",
		"10.1.2.3":       "10.1.2.3/32",
		"fd12:3456::/32": "fd12:3456::/32",
		"100.64.0.0/11":  "100.64.0.0/11",
		"2001:db8::/32":  "2001:db8::/32",
		"192.168.0.0/16": "192.168.0.0/16",
		"8.8.8.0/24":     "8.8.8.0/24", // public: changes nothing, harmless
	} {
		got, err := targets.CheckAllowedCIDR(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got.String(), in)
	}
	for in, msg := range map[string]string{
		"0.0.0.0/0":           "overlaps 0.0.0.0/8",
		"127.0.0.0/8":         "overlaps 127.0.0.0/8",
		"169.254.0.0/16":      "overlaps 169.254.0.0/16",
		"169.254.169.254":     "overlaps 169.254.0.0/16",
		"100.64.0.0/10":       "overlaps 100.100.100.200/32",
		"fd00::/8":            "overlaps fd00:ec2::254/128",
		"fc00::/7":            "overlaps fd00:ec2::254/128",
		"::/0":                "overlaps ::/96",
		"::ffff:10.0.0.0/104": "overlaps ::ffff:0.0.0.0/96",
		"64:ff9b::/96":        "overlaps 64:ff9b::/96",
		"fe80::/64":           "overlaps fe80::/10",
		"10.0.0.0/33":         "is not a CIDR",
		"ten":                 "is not a CIDR",
		"":                    "is not a CIDR",
		"fe80::1%eth0":        "IPv6 zone",
	} {
		_, err := targets.CheckAllowedCIDR(in)
		require.ErrorContains(t, err, msg, in)
	}
}

// TestNoLookup: with an enforcing egress proxy the relay does not resolve names, but still
// refuses what it can judge without DNS.
func TestNoLookup(t *testing.T) {
	t.Parallel()
	p := targets.Policy{NoLookup: true, Resolver: resolverFunc(func(context.Context, string) ([]net.IPAddr, error) {
		t.Fatal("resolver called")
		return nil, nil
	})}
	require.NoError(t, p.Validate(context.Background(), "https://rebind.example.com/hook"))
	require.NoError(t, p.Validate(context.Background(), "https://does-not-resolve.example/hook"))
	require.ErrorContains(t, p.Validate(context.Background(), "https://10.0.0.1/hook"), "private")
	require.ErrorContains(t, p.Validate(context.Background(), "https://app.localhost/hook"), "loopback name")
}
