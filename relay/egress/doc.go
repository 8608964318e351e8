// Package egress builds the HTTP client every webhook request leaves the relay through: the
// SSRF guard on its connections, the optional egress proxy (RELAY_EGRESS_PROXY), the root CAs
// receivers' certificates are verified against (RELAY_CA_FILE), and the transport settings
// (no redirects, TLS 1.2 or later, a pool sized for the workers). It is the one place where
// that transport is made.
//
// # Direct connections
//
// Without a proxy the relay connects to receivers itself, and targets.Policy.DialControl
// judges the address of every connection after DNS resolution, so a name that rebinds to a
// private address is refused at connect time ("connection to private address X refused").
//
// # Through an egress proxy
//
// With RELAY_EGRESS_PROXY every request, http:// and https:// alike, goes through an HTTP
// CONNECT tunnel (Stripe's Smokescreen is the usual such proxy), so receivers may allowlist
// the proxy's addresses. TLS to the receiver runs end to end inside the tunnel: the proxy
// sees the CONNECT line and encrypted bytes, never the webhook. User info in the proxy URL is
// sent as Proxy-Authorization: Basic and is never written to a log or an attempt's error.
// The standard library's proxy support (http.Transport.Proxy) is not used: it asks the proxy
// for the target's name, which the proxy would resolve again after any check of the relay's.
//
// Who checks what:
//   - By default (RELAY_EGRESS_PROXY_ENFORCES_SSRF=false) the relay checks, as without a
//     proxy: it resolves the target's name, refuses every address its policy does not permit,
//     and asks the proxy to CONNECT to a permitted address as IP:port, never to the name. The
//     proxy thus resolves nothing, and a name cannot rebind between the relay's check and the
//     proxy's connection. When no address is permitted the attempt fails with the policy's
//     error and the proxy is never contacted. The cost: the proxy sees IP addresses, so an
//     allowlist of host names in the proxy cannot apply, and the relay needs DNS for the
//     receivers' names. TLS still verifies the certificate against the name in the URL.
//   - With RELAY_EGRESS_PROXY_ENFORCES_SSRF=true the proxy is trusted to refuse private
//     targets (Smokescreen does by default): the relay resolves nothing and asks the proxy
//     for host:port as written in the URL. Subscription validation then still refuses
//     private IP literals and localhost names, but no longer resolves names.
//
// The connection to the proxy itself is not guarded: the proxy is the operator's choice and
// usually sits on a private address.
//
// # Failures
//
// A proxy that cannot be reached, closes the connection, or answers CONNECT with anything but
// 2xx fails the attempt like an unreachable receiver would: the attempt's error is a
// *ProxyError's text, such as "egress proxy 10.0.0.5:4750 refused CONNECT 93.184.216.34:443:
// 403 Forbidden: denied by egress policy", and the delivery is retried on its schedule. It is
// not a fault of the relay: other deliveries go on, and readiness is unaffected.
//
// # Client certificates
//
// Config.ClientCertificate makes a client that presents that certificate to receivers asking
// for one (mTLS). The deliverer makes one such client per subscription certificate from the
// relay's Config, so the guard, the proxy and the roots apply to it as to the shared client,
// which presents none.
//
// # Root CAs
//
// LoadRoots adds the certificates of a PEM file to the system's roots, for receivers on a
// private PKI. It refuses a file that cannot be read or holds no certificate, so that a
// mistake stops start-up instead of failing every delivery to those receivers.
package egress
