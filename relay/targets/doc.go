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
// # Admitted private ranges
//
// Policy.AllowCIDRs (RELAY_ALLOW_PRIVATE_CIDRS) opens chosen private ranges, such as an
// internal receiver in 10.20.0.0/16, where AllowPrivate would open them all. Both checks
// use Policy.Permits, so an address is judged the same at validation and at dial time. Some
// ranges are never admitted (NeverAdmitted): loopback and "this network", link-local (the
// metadata services at 169.254.169.254), the metadata addresses 100.100.100.200 and
// fd00:ec2::254, multicast and reserved space, and the IPv6 forms that carry an IPv4 address
// translated by another host (NAT64, 6to4, Teredo, IPv4-compatible and -translated).
// CheckAllowedCIDR refuses a prefix that overlaps any of them, at start-up, rather than
// admitting it minus those ranges: 100.64.0.0/10 is refused because 100.100.100.200 is in
// it, and the operator lists 100.64.0.0/11 instead. An IPv4-mapped address is judged as the
// IPv4 address; an ISATAP identifier under an admitted IPv6 prefix only when the IPv4
// address it carries is permitted too.
//
// # Behind an egress proxy
//
// When webhooks leave through an HTTP CONNECT proxy (RELAY_EGRESS_PROXY), the relay
// connects only to the proxy, and DialControl would judge the proxy's address, which is the
// operator's choice and often private. The egress package then does the same check itself:
// it resolves the target's name, refuses with Policy.Check every address not permitted, and
// asks the proxy to CONNECT to the checked IP address, never to the name, so that the proxy
// has nothing left to resolve (no window for DNS rebinding between the check and the
// connection). With Policy.NoLookup (RELAY_EGRESS_PROXY_ENFORCES_SSRF) the proxy is trusted
// with the check instead: Validate still refuses private IP literals and localhost names,
// but resolves nothing, and the proxy is asked for the name.
//
// # What counts as private
//
// IsPrivate is a deny list of everything that is not a globally reachable unicast address.
// IPv4: loopback, RFC 1918, link-local, "this network" (0.0.0.0/8), multicast, broadcast and
// reserved (240.0.0.0/4), CGNAT (100.64.0.0/10), IETF protocol assignments, benchmarking and
// documentation ranges; the cloud metadata addresses 169.254.169.254 and 100.100.100.200 fall
// in them. IPv6: every address outside 2000::/3, the only space allocated for global unicast
// (so unspecified, loopback, unique local fc00::/7 with the AWS metadata address
// fd00:ec2::254, link-local, site-local, multicast, discard-only 100::/64), and inside it
// Teredo, benchmarking and documentation ranges. An invalid address is private: the guard
// fails closed.
//
// IPv6 addresses that carry an IPv4 address are refused when they could reach a private one:
//   - IPv4-mapped ::ffff:a.b.c.d is the IPv4 address itself (the socket layer connects to it
//     over IPv4), judged as such;
//   - NAT64 with the well-known prefix, 64:ff9b::/96 (RFC 6052), is judged by the IPv4
//     address it carries: a NAT64 gateway translates 64:ff9b::7f00:1 to 127.0.0.1;
//   - 6to4, 2002::/16, is judged by the IPv4 address of its relay (bits 16 to 47);
//   - an ISATAP interface identifier (RFC 5214: ...:0:5efe:a.b.c.d or ...:200:5efe:a.b.c.d)
//     under any prefix is refused when its IPv4 address is private, because under the
//     relay's own site prefix the site's ISATAP router delivers it to that IPv4 host;
//   - refused whatever they carry, as outside 2000::/3: IPv4-translated ::ffff:0:a.b.c.d
//     (::ffff:0:0:0/96, RFC 2765, what a SIIT translator turns into a.b.c.d), the
//     deprecated IPv4-compatible ::a.b.c.d (::/96), and local-use NAT64 64:ff9b:1::/48, whose
//     mapping is the local network's own;
//   - Teredo, 2001::/32, is refused whatever it carries: its IPv4 addresses are obfuscated
//     and its traffic crosses a relay chosen by the address.
//
// NAT64 with a network-specific prefix (RFC 6052 allows any /32 to /96) cannot be recognised
// from the address: on such a network, the translator itself must not reach private IPv4
// addresses.
package targets
