// Package targets decides which webhook target URLs the relay may call: it validates the URL
// a subscription is created with, and guards every connection the deliverer opens, so that a
// subscriber cannot point the relay at the relay's own network (SSRF).
//
// # The two checks
//
// Policy.Validate runs when a subscription is created or changed. It refuses, with an *Error
// whose Code is "invalid_target_url" and whose Message says why:
//   - anything that is not an absolute http(s) URL: another scheme, a relative or opaque URL
//     ("https:host"), user info ("https://user:pass@host"), an empty host, a bad port, any
//     white space, or more than MaxURLLength characters. http is refused unless AllowHTTP.
//     A fragment is allowed (it is never sent);
//   - an IPv6 literal with a zone ("[fe80::1%25eth0]") and a host that is not a plain DNS
//     name (non-ASCII names must be given in their xn-- form);
//   - a host whose last label is a number ("2130706433", "127.1", "0x7f.1", "127.000.0.1"):
//     browsers and some resolvers read those as IPv4 addresses in shorthand, decimal, octal or
//     hex forms, so they are refused whatever AllowPrivate says;
//   - unless AllowPrivate: the names "localhost" and "*.localhost", an IP literal for which
//     IsPrivate is true, and a name that resolves to any such address. A name that does not
//     resolve is refused as well ("host ... does not resolve"), because nothing can be said
//     about where it would lead.
//
// With AllowPrivate the resolver is not consulted at all: every address is allowed, so a name
// that does not resolve yet (a service about to be created) is accepted.
//
// Policy.DialControl runs on every connection the deliverer opens (net.Dialer.Control), after
// DNS resolution, on the address actually dialled. A name that resolved to a public address at
// creation and to 127.0.0.1 later (DNS rebinding), or a load balancer that gains a private
// address, is refused there: "connection to private address 127.0.0.1 refused". This is the
// check that matters; Validate only gives the subscriber an early, clear answer.
//
// # What counts as private
//
// IsPrivate is a deny list of everything that is not a globally reachable unicast address:
// loopback, RFC 1918, unique local (fc00::/7), link-local, site-local, unspecified and
// "this network" (0.0.0.0/8), multicast, broadcast and reserved (240.0.0.0/4), CGNAT
// (100.64.0.0/10), IETF protocol assignments, benchmarking and documentation ranges, and
// the cloud metadata addresses (169.254.169.254, fd00:ec2::254 and 100.100.100.200 fall in
// the ranges above). IPv6 forms that carry an IPv4 address (IPv4-mapped ::ffff:a.b.c.d,
// NAT64 64:ff9b::/96, 6to4 2002::/16) are judged by the address they carry; the deprecated
// IPv4-compatible ::/96, Teredo and local-use NAT64 are refused outright. An invalid address
// is private: the guard fails closed.
package targets
