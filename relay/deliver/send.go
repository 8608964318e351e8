package deliver

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/referralloop/outbox-relay/internal/pgtext"
	"github.com/referralloop/outbox-relay/relay/egress"
	"github.com/referralloop/outbox-relay/relay/metrics"
	"github.com/referralloop/outbox-relay/relay/signature"
)

// responseLogLimit is how much of a response body the attempt log keeps.
const responseLogLimit = 1024

// errorLogLimit bounds an attempt's error text, and locationLogLimit the part of it that
// quotes a redirect's Location, in bytes.
const (
	errorLogLimit    = 1024
	locationLogLimit = 200
)

// drainLimit is how much more of a response is read, after the logged part, to keep the
// connection reusable. A larger body is cut off with the connection.
const drainLimit = 64 << 10

// job is one claimed delivery, ready to send.
type job struct {
	deliveryID     int64
	attempt        int
	eventID        string
	eventType      string
	createdAt      time.Time
	tenantID       string
	subscriptionID string
	// subscriptionTenant is the subscription's tenant, for operational events about it.
	subscriptionTenant string
	// ordered is set for a delivery that heads an ordering-key line: when it ends, the next
	// one of its line becomes claimable.
	ordered   bool
	targetURL string
	// client sends the request when the subscription has a client certificate; nil means
	// the shared client.
	client  *http.Client
	headers map[string]string
	signers []signature.Signer
	body    []byte
	// payloadSize is set, and body empty, when the payload exceeds MaxPayloadBytes.
	payloadSize int
	// unreadable says why the event's row cannot become a webhook (its created_at is not
	// a finite time, say): the delivery fails without a request, and nothing else does.
	unreadable string
	// keyProblem is set when no configured key opens the subscription's secret or a sealed
	// header value: a fault of this relay's configuration, not of the receiver, so the job
	// is given back unsent and the subscription waits (see KeyProblems).
	keyProblem error
	// badHeaders is set when the subscription's headers column is not in the stored form
	// (written by hand, say). Like a key problem it is the subscription's, not the
	// receiver's: the job is given back unsent and the subscription waits until fixed.
	badHeaders error
	// sendBy is the last moment the job may be sent: after it, the rest of its lease might
	// not cover the request.
	sendBy time.Time
	// timeout bounds the request, connection to last byte: the subscription's own, or
	// DeliveryTimeout.
	timeout time.Duration
	// rateLimit is the subscription's requests per second; zero for none.
	rateLimit float64
	// quick is set when the job's request is expected to end soon (its lane answers fast):
	// the recorder waits for quick requests to batch their results, never for others.
	quick bool
}

// result is what one attempt produced.
type result struct {
	job        *job
	startedAt  time.Time
	duration   time.Duration
	statusCode int // 0: no HTTP answer
	err        string
	response   string
	retryAfter time.Duration
	// aborted means the attempt was cut short by shutdown: the claim is released instead of
	// recorded, so the attempt does not count against the delivery.
	aborted bool
	// localFault is set (to a metrics.Fault* kind) when the request failed for a reason of
	// this process, such as running out of file descriptors: like aborted, the claim is
	// released, later, and the receiver is not charged with an attempt.
	localFault string
	// class is the attempt's outcome class for metrics (metrics.Outcome*).
	class string
	// outcome and delay are filled in from the schedule by the deliverer.
	outcome outcome
	delay   time.Duration
}

// send makes one attempt. It never returns an error: every failure is a result.
func (d *Deliverer) send(ctx context.Context, j *job) (res result) {
	res = result{job: j, startedAt: d.now(), class: metrics.OutcomeNotSent}
	// Every text from outside (a Location header, the text of a TLS error that quotes a
	// certificate) is made storable here, once, whatever path set it.
	defer func() { res.err = pgtext.Clean(res.err, errorLogLimit) }()
	if j.payloadSize > 0 {
		res.err = fmt.Sprintf("payload too large: %d bytes exceeds the limit of %d bytes (RELAY_MAX_PAYLOAD_BYTES); not sent", j.payloadSize, d.cfg.MaxPayloadBytes)
		return res
	}
	if j.unreadable != "" {
		res.err = j.unreadable + "; not sent"
		return res
	}

	timeout := cmp.Or(j.timeout, d.cfg.DeliveryTimeout)
	reqCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var span trace.Span
	if d.cfg.Tracer != nil {
		reqCtx, span = d.cfg.Tracer.Start(reqCtx, "webhook "+j.eventType, trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(
				attribute.String("http.request.method", http.MethodPost),
				attribute.String("messaging.message.id", j.eventID),
				attribute.String("outbox_relay.event_type", j.eventType),
				attribute.String("outbox_relay.delivery_id", d.cfg.DeliveryIDs.Format(j.deliveryID)),
				attribute.String("outbox_relay.subscription_id", j.subscriptionID),
				attribute.Int("outbox_relay.attempt", j.attempt),
			))
		defer func() { endSpan(span, &res) }()
	}
	req, err := http.NewRequestWithContext(reqCtx, http.MethodPost, j.targetURL, bytes.NewReader(j.body))
	if err != nil {
		res.err = "invalid target URL: " + err.Error()
		res.duration = d.now().Sub(res.startedAt)
		return res
	}
	for k, v := range j.headers {
		req.Header.Set(k, v)
	}
	ts := res.startedAt.Unix()
	sig := signature.SignatureHeader(j.signers, j.eventID, ts, j.body)
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", d.cfg.UserAgent)
	h["webhook-id"] = []string{j.eventID} // lower-case on the wire, as the Standard Webhooks spec writes them
	h["webhook-timestamp"] = []string{strconv.FormatInt(ts, 10)}
	h["webhook-signature"] = []string{sig}
	h.Set("X-Webhook-Signature", sig)
	h.Set("X-Webhook-Event", j.eventType)
	h.Set("X-Webhook-Attempt", strconv.Itoa(j.attempt))
	if span != nil && span.SpanContext().IsValid() {
		propagation.TraceContext{}.Inject(reqCtx, propagation.HeaderCarrier(h))
	}

	client := d.client
	if j.client != nil {
		client = j.client
	}
	resp, err := client.Do(req)
	if err != nil {
		res.duration = d.now().Sub(res.startedAt)
		if ctx.Err() != nil {
			res.aborted = true
		}
		res.err = describeError(err, timeout)
		res.class = metrics.OutcomeOf(0, isTimeout(err), true)
		if isLocalFault(err) {
			res.localFault = metrics.FaultResources
		}
		return res
	}
	defer resp.Body.Close()
	res.statusCode = resp.StatusCode
	res.class = metrics.OutcomeOf(resp.StatusCode, false, true)
	logged, readErr := io.ReadAll(io.LimitReader(resp.Body, responseLogLimit))
	if readErr == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, drainLimit))
	}
	res.duration = d.now().Sub(res.startedAt)
	res.response = pgtext.CleanPrefix(logged, responseLogLimit)
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		// success, whatever happened while draining the rest of the body
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		res.err = fmt.Sprintf("HTTP %d: redirects are not followed", resp.StatusCode)
		if loc := resp.Header.Get("Location"); loc != "" {
			res.err += " (Location: " + pgtext.Clean(loc, locationLogLimit) + ")"
		}
	default:
		res.err = fmt.Sprintf("HTTP %d", resp.StatusCode)
		res.retryAfter = parseRetryAfter(resp.StatusCode, resp.Header.Get("Retry-After"), d.now())
	}
	return res
}

func isTimeout(err error) bool {
	var netErr net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &netErr) && netErr.Timeout())
}

// endSpan records the attempt's result on its span.
func endSpan(span trace.Span, res *result) {
	if res.statusCode != 0 {
		span.SetAttributes(attribute.Int("http.response.status_code", res.statusCode))
	}
	if res.err != "" {
		span.SetStatus(codes.Error, res.err)
	}
	span.End()
}

// describeError turns a transport error into the short, stable text the attempt log keeps.
func describeError(err error, timeout time.Duration) string {
	var netErr net.Error
	var dnsErr *net.DNSError
	var opErr *net.OpError
	var urlErr *url.Error
	var proxyErr *egress.ProxyError
	switch {
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &netErr) && netErr.Timeout()):
		return fmt.Sprintf("timeout: no answer within %s", timeout)
	case errors.Is(err, context.Canceled):
		return "cancelled: relay shutting down"
	case errors.As(err, &proxyErr):
		// Before the receiver-side cases: a proxy that closed or refused the connection is
		// not a receiver that did.
		return proxyErr.Error()
	case errors.As(err, &dnsErr):
		return "dns: " + dnsErr.Error()
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed by the receiver before a response"
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return "connect: " + opErr.Err.Error()
	case isTLSError(err):
		// Most TLS errors already say "tls: "; say it once.
		return "tls: " + strings.TrimPrefix(unwrapURLError(err).Error(), "tls: ")
	case errors.As(err, &urlErr):
		return urlErr.Err.Error()
	default:
		return err.Error()
	}
}

func isTLSError(err error) bool {
	var recordErr tls.RecordHeaderError
	var certErr *tls.CertificateVerificationError
	var alertErr tls.AlertError
	return errors.As(err, &recordErr) || errors.As(err, &certErr) || errors.As(err, &alertErr) ||
		strings.Contains(err.Error(), "tls: ")
}

func unwrapURLError(err error) error {
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		return urlErr.Err
	}
	return err
}

// isLocalFault reports whether a request failed for a reason of this process or host rather
// than of the receiver or the network: no file descriptor, memory, buffer space or local
// port was left to make it.
func isLocalFault(err error) bool {
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.EADDRNOTAVAIL} {
		if errors.Is(err, errno) {
			return true
		}
	}
	return false
}
