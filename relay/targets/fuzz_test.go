package targets_test

import (
	"context"
	"hash/fnv"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/relay/targets"
)

// hashResolver answers every name with an address chosen by a hash of the name, public or
// private, or with "not found", so the fuzzer reaches every branch without a network.
type hashResolver struct{}

var fuzzAddrs = []string{"93.184.216.34", "10.0.0.1", "127.0.0.1", "::ffff:169.254.169.254", "::ffff:0:169.254.169.254", "2606:4700::1", "fd00:ec2::254", ""}

func (hashResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	h := fnv.New32a()
	h.Write([]byte(host))
	a := fuzzAddrs[h.Sum32()%uint32(len(fuzzAddrs))]
	if a == "" {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return []net.IPAddr{{IP: net.ParseIP(a)}}, nil
}

func FuzzValidate(f *testing.F) {
	for _, s := range []string{
		"https://hooks.example.com/x", "http://a.b/", "https://127.0.0.1/", "https://[::1]/",
		"https://[::ffff:10.0.0.1]:8443/", "https://[::ffff:0:127.0.0.1]/", "https://[64:ff9b::a9fe:a9fe]/", "https://0x7f.1/", "https://2130706433/", "https://localhost/",
		"https://user@host/", "https:opaque", "//host/x", "https://[fe80::1%25eth0]/", "", "https://%/",
		"https://a.localhost./", "https://xn--bcher-kva.example/", "https://h:99999/",
	} {
		f.Add(s, false, false)
	}
	f.Fuzz(func(t *testing.T, raw string, allowHTTP, allowPrivate bool) {
		p := targets.Policy{AllowHTTP: allowHTTP, AllowPrivate: allowPrivate, Resolver: hashResolver{}}
		err := p.Validate(context.Background(), raw)
		if err != nil {
			terr, ok := err.(*targets.Error)
			require.True(t, ok, "error is a *targets.Error: %T", err)
			require.Equal(t, targets.CodeInvalidTargetURL, terr.Code)
			require.NotEmpty(t, terr.Message)
			return
		}
		// Accepted: check the promises independently.
		u, perr := url.Parse(raw)
		require.NoError(t, perr)
		scheme := strings.ToLower(u.Scheme)
		require.True(t, scheme == "https" || allowHTTP && scheme == "http", "scheme %q", u.Scheme)
		require.Nil(t, u.User)
		require.NotEmpty(t, u.Hostname())
		require.LessOrEqual(t, len([]rune(raw)), targets.MaxURLLength)
		if allowPrivate {
			return
		}
		host := u.Hostname()
		if ip, err := netip.ParseAddr(host); err == nil {
			require.False(t, targets.IsPrivate(ip), "accepted private literal %s", ip)
			return
		}
		addrs, lerr := hashResolver{}.LookupIPAddr(context.Background(), strings.ToLower(strings.TrimSuffix(host, ".")))
		require.NoError(t, lerr, "accepted a name that does not resolve")
		for _, a := range addrs {
			ip, _ := netip.AddrFromSlice(a.IP)
			require.False(t, targets.IsPrivate(ip), "accepted %s resolving to %s", host, ip)
		}
	})
}
