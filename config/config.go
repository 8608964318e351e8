package config

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"text/template"
	"time"

	"github.com/kelseyhightower/envconfig"
	"github.com/lib/pq"

	"github.com/referralloop/outbox-relay/internal/defaults"
	"github.com/referralloop/outbox-relay/outbox"
	"github.com/referralloop/outbox-relay/relay/egress"
	"github.com/referralloop/outbox-relay/relay/targets"
)

// KeySize is the length in bytes of RELAY_ENCRYPTION_KEY and
// RELAY_ENCRYPTION_KEY_PREVIOUS once decoded (AES-256).
const KeySize = 32

// Config is the relay's whole configuration, read from the environment by
// Load. Struct tags are the single source of every variable's name and
// description (see Usage); defaults come from package defaults, through
// defaultConfig, and never from a tag, so that the relay's packages fall back to
// the very values Usage prints. Tags: envconfig is the full variable name,
// secret marks values that must never be printed ("password": a database
// or proxy URL, or a DSN, printed without its password), usagedefault overrides the
// DEFAULT column of Usage when the default is another variable's value.
type Config struct {
	// DatabaseURL is where the outbox and the relay's tables live. Required.
	DatabaseURL string `envconfig:"RELAY_DATABASE_URL" required:"true" secret:"password" desc:"PostgreSQL URL (postgres://...) or key=value DSN"`
	// ListenDatabaseURL is the direct connection used for LISTEN, for setups
	// behind PgBouncer in transaction pooling. Load fills it with DatabaseURL
	// when it is unset or empty.
	ListenDatabaseURL string `envconfig:"RELAY_LISTEN_DATABASE_URL" secret:"password" usagedefault:"RELAY_DATABASE_URL" desc:"direct connection for LISTEN (bypass PgBouncer)"`

	// APIToken is the bearer token of the management API. Required; empty
	// only together with InsecureNoAuth.
	APIToken string `envconfig:"RELAY_API_TOKEN" required:"true" secret:"true" desc:"bearer token for the management API"`
	// InsecureNoAuth turns authentication off; only valid with an empty
	// APIToken.
	InsecureNoAuth bool `envconfig:"RELAY_INSECURE_NO_AUTH" desc:"run the API without auth (needs RELAY_API_TOKEN set empty)"`

	// Schema is the PostgreSQL schema of every relay object.
	Schema string `envconfig:"RELAY_SCHEMA" desc:"PostgreSQL schema for the relay's tables"`
	// AutoMigrate runs the migrations when serve starts.
	AutoMigrate bool `envconfig:"RELAY_AUTO_MIGRATE" desc:"migrate the schema when serve starts"`
	// NotifyTrigger installs (true) or drops (false) the NOTIFY trigger at
	// migrate time.
	NotifyTrigger bool `envconfig:"RELAY_NOTIFY_TRIGGER" desc:"install the NOTIFY trigger at migrate time"`

	// ListenAddr serves the management API (the public port in
	// reverse-proxy mode).
	ListenAddr string `envconfig:"RELAY_LISTEN_ADDR" desc:"management API (or reverse proxy) address"`
	// OpsAddr serves /healthz, /readyz and /metrics without auth.
	OpsAddr string `envconfig:"RELAY_OPS_ADDR" desc:"health and metrics address (no auth)"`
	// AdminAddr serves the operator API in reverse-proxy mode.
	AdminAddr string `envconfig:"RELAY_ADMIN_ADDR" desc:"operator API address in reverse-proxy mode"`

	// DBMaxConns caps the relay's pooled database connections; the LISTEN
	// connection comes on top.
	DBMaxConns int `envconfig:"RELAY_DB_MAX_CONNS" desc:"pooled database connections, besides the LISTEN one (2-1000)"`

	// PollInterval is how often the outbox is polled whatever NOTIFY says.
	PollInterval time.Duration `envconfig:"RELAY_POLL_INTERVAL" desc:"outbox polling interval"`
	// BatchSize is the number of rows claimed per query.
	BatchSize int `envconfig:"RELAY_BATCH_SIZE" desc:"rows claimed per statement, up to 10x in a backlog (1-10000)"`
	// Workers is the number of concurrent delivery requests.
	Workers int `envconfig:"RELAY_WORKERS" desc:"concurrent deliveries (1-10000)"`
	// DeliveryTimeout bounds one webhook request.
	DeliveryTimeout time.Duration `envconfig:"RELAY_DELIVERY_TIMEOUT" desc:"timeout of one webhook request"`
	// RetrySchedule holds the delays before each retry; empty means no
	// retries. Assignable to []time.Duration.
	RetrySchedule DurationList `envconfig:"RELAY_RETRY_SCHEDULE" desc:"delays between attempts, comma-separated (empty: no retries)"`
	// MaxPayloadBytes is the largest payload that is sent.
	MaxPayloadBytes int `envconfig:"RELAY_MAX_PAYLOAD_BYTES" desc:"largest payload sent; larger ones fail"`
	// DisableAfter disables a subscription whose attempts all failed for
	// this long.
	DisableAfter time.Duration `envconfig:"RELAY_DISABLE_AFTER" desc:"disable an endpoint failing for this long"`
	// MaxInFlightPerSubscription caps concurrent requests to one
	// subscription.
	MaxInFlightPerSubscription int `envconfig:"RELAY_MAX_IN_FLIGHT_PER_SUBSCRIPTION" desc:"concurrent requests per subscription"`
	// SecretRotationOverlap is how long the old secret keeps signing after a
	// rotation.
	SecretRotationOverlap time.Duration `envconfig:"RELAY_SECRET_ROTATION_OVERLAP" desc:"old secret keeps signing this long after rotation"`
	// Retention is the age after which finished work is deleted.
	Retention time.Duration `envconfig:"RELAY_RETENTION" desc:"delete finished deliveries and outbox rows after"`
	// ShutdownGrace bounds the drain of in-flight attempts on SIGTERM.
	ShutdownGrace time.Duration `envconfig:"RELAY_SHUTDOWN_GRACE" desc:"time to finish in-flight attempts on SIGTERM"`

	// AllowHTTP accepts http:// target URLs.
	AllowHTTP bool `envconfig:"RELAY_ALLOW_HTTP" desc:"accept http:// target URLs"`
	// AllowPrivateTargets accepts targets on loopback, private and metadata
	// addresses.
	AllowPrivateTargets bool `envconfig:"RELAY_ALLOW_PRIVATE_TARGETS" desc:"accept private, loopback and metadata targets"`
	// AllowPrivateCIDRs admits targets in these private ranges; loopback, link-local and
	// metadata addresses stay refused (a range overlapping them is refused). Assignable to
	// []netip.Prefix.
	AllowPrivateCIDRs CIDRList `envconfig:"RELAY_ALLOW_PRIVATE_CIDRS" desc:"private ranges accepted as targets, comma-separated CIDRs"`
	// EgressProxy is an http:// CONNECT proxy every webhook request goes through; user info
	// in it is sent as Proxy-Authorization and masked in logs. Empty: direct connections.
	EgressProxy string `envconfig:"RELAY_EGRESS_PROXY" secret:"password" desc:"CONNECT proxy for webhooks, http://[user:pass@]host:port"`
	// EgressProxyEnforcesSSRF trusts EgressProxy to refuse private targets: the relay then
	// does not resolve target names itself. Only with EgressProxy.
	EgressProxyEnforcesSSRF bool `envconfig:"RELAY_EGRESS_PROXY_ENFORCES_SSRF" desc:"the egress proxy refuses private targets; skip the relay's check"`
	// CAFile is a PEM file of root CAs trusted for receivers besides the system's. Empty:
	// the system's only.
	CAFile string `envconfig:"RELAY_CA_FILE" desc:"PEM file of extra root CAs for receivers"`

	// EncryptionKey encrypts subscription secrets at rest (AES-256-GCM);
	// nil means they are stored in plain text. Assignable to []byte.
	EncryptionKey Key `envconfig:"RELAY_ENCRYPTION_KEY" secret:"true" desc:"base64 of 32 bytes; encrypts secrets at rest (empty: off)"`
	// EncryptionKeyPrevious still decrypts during a key rotation; only with
	// EncryptionKey.
	EncryptionKeyPrevious Key `envconfig:"RELAY_ENCRYPTION_KEY_PREVIOUS" secret:"true" desc:"previous key, still decrypts during a rotation"`

	// LogFormat is "json" or "console".
	LogFormat string `envconfig:"RELAY_LOG_FORMAT" desc:"json or console"`
	// LogLevel is one of trace, debug, info, warn, error.
	LogLevel string `envconfig:"RELAY_LOG_LEVEL" desc:"trace, debug, info, warn or error"`

	// UpstreamURL turns reverse-proxy mode on: the application behind the
	// relay. Empty means off.
	UpstreamURL string `envconfig:"RELAY_UPSTREAM_URL" desc:"application to proxy to (empty: no reverse proxy)"`
	// ProxyPrefix is the path under which the relay serves its API in
	// reverse-proxy mode.
	ProxyPrefix string `envconfig:"RELAY_PROXY_PREFIX" desc:"path of the relay's API in reverse-proxy mode"`
	// AuthURL is the forward-auth endpoint; required in reverse-proxy mode.
	AuthURL string `envconfig:"RELAY_AUTH_URL" desc:"forward-auth URL (required with RELAY_UPSTREAM_URL)"`
	// AuthCacheTTL is how long a forward-auth answer is reused per
	// credential; 0 disables the cache.
	AuthCacheTTL time.Duration `envconfig:"RELAY_AUTH_CACHE_TTL" desc:"cache forward-auth answers this long (0: off)"`

	// Console serves the web console at /console/ on the management listener and, in
	// reverse-proxy mode, the customer portal under RELAY_PROXY_PREFIX/console/.
	Console bool `envconfig:"RELAY_CONSOLE" desc:"serve the web console and the customer portal"`
	// ConsoleTitle names the application on the console's pages.
	ConsoleTitle string `envconfig:"RELAY_CONSOLE_TITLE" desc:"the application's name on the console's pages"`
	// ConsoleFrameAncestors is the CSP frame-ancestors list: who may embed the console.
	ConsoleFrameAncestors string `envconfig:"RELAY_CONSOLE_FRAME_ANCESTORS" desc:"who may show the console in a frame (CSP frame-ancestors)"`
}

// Error is a configuration error: one line naming the variable.
type Error struct {
	Var string // the variable, e.g. RELAY_POLL_INTERVAL
	Msg string // what is wrong and what is wanted; never contains a secret
}

func (e *Error) Error() string { return e.Var + ": " + e.Msg }

// Errors are several configuration errors, at most one per variable, in the order found:
// a user who set three variables wrong learns of all three at once. Error() is one line per
// problem; errors.As finds the first *Error.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return fmt.Sprintf("%d configuration problems:\n  ", len(es)) + strings.Join(lines, "\n  ")
}

// Unwrap answers the errors one by one, for errors.As and errors.Is.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// add keeps e unless a problem with its variable is already known: the first says it.
func (es *Errors) add(e *Error) {
	for _, known := range *es {
		if known.Var == e.Var {
			return
		}
	}
	*es = append(*es, e)
}

// err answers nil, the one *Error, or all of them.
func (es Errors) err() error {
	switch len(es) {
	case 0:
		return nil
	case 1:
		return es[0]
	}
	return es
}

func errorf(name, format string, args ...any) *Error {
	return &Error{Var: name, Msg: oneLine(fmt.Sprintf(format, args...))}
}

// defaultConfig is the configuration of an empty environment, required
// variables aside: the one place where defaults meet variables.
func defaultConfig() Config {
	return Config{
		Schema:                     defaults.Schema,
		AutoMigrate:                defaults.AutoMigrate,
		NotifyTrigger:              defaults.NotifyTrigger,
		ListenAddr:                 defaults.ListenAddr,
		OpsAddr:                    defaults.OpsAddr,
		AdminAddr:                  defaults.AdminAddr,
		DBMaxConns:                 defaults.DBMaxConns,
		PollInterval:               defaults.PollInterval,
		BatchSize:                  defaults.BatchSize,
		Workers:                    defaults.Workers,
		DeliveryTimeout:            defaults.DeliveryTimeout,
		RetrySchedule:              defaults.RetrySchedule(),
		MaxPayloadBytes:            defaults.MaxPayloadBytes,
		DisableAfter:               defaults.DisableAfter,
		MaxInFlightPerSubscription: defaults.MaxInFlightPerSubscription,
		SecretRotationOverlap:      defaults.SecretRotationOverlap,
		Retention:                  defaults.Retention,
		ShutdownGrace:              defaults.ShutdownGrace,
		LogFormat:                  defaults.LogFormat,
		LogLevel:                   defaults.LogLevel,
		ProxyPrefix:                defaults.ProxyPrefix,
		AuthCacheTTL:               defaults.AuthCacheTTL,
		Console:                    defaults.Console,
		ConsoleTitle:               defaults.ConsoleTitle,
		ConsoleFrameAncestors:      defaults.ConsoleFrameAncestors,
	}
}

// Load reads the process environment, fills in defaults and validates the
// result. The error, if any, is an *Error, or Errors when several variables are
// wrong: every problem is reported at once, an unknown RELAY_ variable (a typo)
// among them.
func Load() (Config, error) {
	// A variable that is unset keeps its default; one set to the empty string
	// still overrides (an empty RELAY_RETRY_SCHEDULE means no retries).
	c := defaultConfig()
	var errs Errors
	for _, e := range unknownVariables(os.Environ()) {
		errs.add(e)
	}
	for _, f := range fields() {
		if f.required {
			if _, ok := os.LookupEnv(f.name); !ok {
				errs.add(requiredError(f.name))
			}
		}
	}
	for _, e := range decodeEach(&c) {
		errs.add(e)
	}

	c.DatabaseURL = strings.TrimSpace(c.DatabaseURL)
	c.ListenDatabaseURL = strings.TrimSpace(c.ListenDatabaseURL)
	if c.ListenDatabaseURL == "" {
		c.ListenDatabaseURL = c.DatabaseURL
	}
	// A token read from a file often ends in a newline that no client sends.
	c.APIToken = strings.TrimSpace(c.APIToken)
	c.LogFormat = strings.ToLower(strings.TrimSpace(c.LogFormat))
	c.LogLevel = strings.ToLower(strings.TrimSpace(c.LogLevel))

	if err := c.Validate(); err != nil {
		var more Errors
		if !errors.As(err, &more) {
			more = Errors{err.(*Error)}
		}
		for _, e := range more {
			errs.add(e)
		}
	}
	if err := errs.err(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// decodeEach sets every field of c whose variable is set, each on its own, so that a value
// that does not parse hides no other problem; it answers one error per such value.
func decodeEach(c *Config) []*Error {
	var out []*Error
	v := reflect.ValueOf(c).Elem()
	for _, f := range fields() {
		if _, set := os.LookupEnv(f.name); !set {
			continue
		}
		// A struct of this one field, with its tags: envconfig decodes it exactly as it would
		// the whole Config. The empty prefix is deliberate: the tags hold the full names,
		// and a prefix would make envconfig fall back to unprefixed variables.
		sf := v.Type().Field(f.index)
		one := reflect.New(reflect.StructOf([]reflect.StructField{{Name: sf.Name, Type: sf.Type, Tag: sf.Tag}}))
		one.Elem().Field(0).Set(v.Field(f.index))
		if err := envconfig.Process("", one.Interface()); err != nil {
			out = append(out, convertError(err))
			continue
		}
		v.Field(f.index).Set(one.Elem().Field(0))
	}
	return out
}

func requiredError(name string) *Error {
	switch name {
	case "RELAY_API_TOKEN":
		return errorf(name, "is required (or set it empty together with RELAY_INSECURE_NO_AUTH=true to run without auth)")
	case "RELAY_DATABASE_URL":
		return errorf(name, "is required (want postgres://user:password@host:5432/db or a key=value DSN)")
	}
	return errorf(name, "is required")
}

// Validate checks values and the rules between them, in field order, and
// returns every problem: an *Error when there is one, Errors when there are
// more (one per variable, the first found). Load calls it; call it again on a
// Config built by hand. Like lib/pq when it connects, it reads the PG*
// environment variables and the TLS files the database URLs name.
func (c Config) Validate() error {
	var errs Errors
	if c.DatabaseURL == "" {
		errs.add(requiredError("RELAY_DATABASE_URL"))
	} else if msg := checkDatabaseURL(c.DatabaseURL); msg != "" {
		errs.add(errorf("RELAY_DATABASE_URL", "%s", msg))
	}
	// Load fills an unset RELAY_LISTEN_DATABASE_URL with RELAY_DATABASE_URL: one problem, one line.
	if c.ListenDatabaseURL != "" && c.ListenDatabaseURL != c.DatabaseURL {
		if msg := checkDatabaseURL(c.ListenDatabaseURL); msg != "" {
			errs.add(errorf("RELAY_LISTEN_DATABASE_URL", "%s", msg))
		}
	}

	switch {
	case c.APIToken == "" && !c.InsecureNoAuth:
		errs.add(requiredError("RELAY_API_TOKEN"))
	case c.APIToken != "" && c.InsecureNoAuth:
		errs.add(errorf("RELAY_INSECURE_NO_AUTH", "is true but RELAY_API_TOKEN is set; to run without auth set RELAY_API_TOKEN empty, otherwise remove RELAY_INSECURE_NO_AUTH"))
	}

	if err := outbox.CheckSchemaName(c.Schema); err != nil {
		errs.add(errorf("RELAY_SCHEMA", "%s", err))
	}

	if msg := checkAddr(c.ListenAddr, defaults.ListenAddr); msg != "" {
		errs.add(errorf("RELAY_LISTEN_ADDR", "%s", msg))
	}
	if msg := checkAddr(c.OpsAddr, defaults.OpsAddr); msg != "" {
		errs.add(errorf("RELAY_OPS_ADDR", "%s", msg))
	}
	if msg := checkAddr(c.AdminAddr, defaults.AdminAddr); msg != "" {
		errs.add(errorf("RELAY_ADMIN_ADDR", "%s", msg))
	}
	if sameListener(c.ListenAddr, c.OpsAddr) {
		errs.add(errorf("RELAY_OPS_ADDR", "%q is also RELAY_LISTEN_ADDR; use another port", c.OpsAddr))
	}

	if c.DBMaxConns < 2 || c.DBMaxConns > 1000 {
		errs.add(errorf("RELAY_DB_MAX_CONNS", "must be between 2 and 1000, got %d", c.DBMaxConns))
	}
	if c.PollInterval <= 0 {
		errs.add(errorf("RELAY_POLL_INTERVAL", "must be greater than 0, got %s", c.PollInterval))
	}
	if c.BatchSize < 1 || c.BatchSize > 10000 {
		errs.add(errorf("RELAY_BATCH_SIZE", "must be between 1 and 10000, got %d", c.BatchSize))
	}
	if c.Workers < 1 || c.Workers > 10000 {
		errs.add(errorf("RELAY_WORKERS", "must be between 1 and 10000, got %d", c.Workers))
	}
	if c.DeliveryTimeout <= 0 {
		errs.add(errorf("RELAY_DELIVERY_TIMEOUT", "must be greater than 0, got %s", c.DeliveryTimeout))
	}
	for i, d := range c.RetrySchedule {
		if d <= 0 {
			errs.add(errorf("RELAY_RETRY_SCHEDULE", "delay %d is %s, want greater than 0", i+1, d))
		}
	}
	if c.MaxPayloadBytes <= 0 {
		errs.add(errorf("RELAY_MAX_PAYLOAD_BYTES", "must be greater than 0, got %d", c.MaxPayloadBytes))
	}
	if c.DisableAfter <= 0 {
		errs.add(errorf("RELAY_DISABLE_AFTER", "must be greater than 0, got %s", c.DisableAfter))
	}
	if c.MaxInFlightPerSubscription < 1 {
		errs.add(errorf("RELAY_MAX_IN_FLIGHT_PER_SUBSCRIPTION", "must be at least 1, got %d", c.MaxInFlightPerSubscription))
	}
	if c.SecretRotationOverlap < 0 {
		errs.add(errorf("RELAY_SECRET_ROTATION_OVERLAP", "must not be negative, got %s", c.SecretRotationOverlap))
	}
	if c.Retention <= 0 {
		errs.add(errorf("RELAY_RETENTION", "must be greater than 0, got %s", c.Retention))
	}
	if c.ShutdownGrace < 0 {
		errs.add(errorf("RELAY_SHUTDOWN_GRACE", "must not be negative, got %s", c.ShutdownGrace))
	}

	if c.EgressProxy != "" {
		if err := egress.CheckProxyURL(c.EgressProxy); err != nil {
			errs.add(errorf("RELAY_EGRESS_PROXY", "%s", err))
		}
	} else if c.EgressProxyEnforcesSSRF {
		errs.add(errorf("RELAY_EGRESS_PROXY_ENFORCES_SSRF", "is true but RELAY_EGRESS_PROXY is not set; it says what the proxy checks"))
	}
	if c.CAFile != "" {
		if _, err := egress.LoadRoots(c.CAFile); err != nil {
			errs.add(errorf("RELAY_CA_FILE", "%s", err))
		}
	}

	if len(c.EncryptionKey) != 0 && len(c.EncryptionKey) != KeySize {
		errs.add(errorf("RELAY_ENCRYPTION_KEY", "key is %d bytes, want exactly %d", len(c.EncryptionKey), KeySize))
	}
	if len(c.EncryptionKeyPrevious) != 0 {
		if len(c.EncryptionKey) == 0 {
			errs.add(errorf("RELAY_ENCRYPTION_KEY_PREVIOUS", "is set but RELAY_ENCRYPTION_KEY is not; set the new key in RELAY_ENCRYPTION_KEY"))
		}
		if len(c.EncryptionKeyPrevious) != KeySize {
			errs.add(errorf("RELAY_ENCRYPTION_KEY_PREVIOUS", "key is %d bytes, want exactly %d", len(c.EncryptionKeyPrevious), KeySize))
		}
	}

	switch c.LogFormat {
	case "json", "console":
	default:
		errs.add(errorf("RELAY_LOG_FORMAT", "invalid log format %q (want json or console)", c.LogFormat))
	}
	switch c.LogLevel {
	case "trace", "debug", "info", "warn", "error":
	default:
		errs.add(errorf("RELAY_LOG_LEVEL", "invalid log level %q (want trace, debug, info, warn or error)", c.LogLevel))
	}

	if c.UpstreamURL != "" {
		if msg := checkHTTPURL(c.UpstreamURL, "http://127.0.0.1:3000"); msg != "" {
			errs.add(errorf("RELAY_UPSTREAM_URL", "%s", msg))
		}
	}
	if msg := checkPrefix(c.ProxyPrefix); msg != "" {
		errs.add(errorf("RELAY_PROXY_PREFIX", "%s", msg))
	}
	switch {
	case c.UpstreamURL != "" && c.AuthURL == "":
		errs.add(errorf("RELAY_AUTH_URL", "is required when RELAY_UPSTREAM_URL is set (want e.g. http://127.0.0.1:3000/auth/webhooks)"))
	case c.UpstreamURL == "" && c.AuthURL != "":
		errs.add(errorf("RELAY_AUTH_URL", "is set but RELAY_UPSTREAM_URL is not; forward auth is only used in reverse-proxy mode"))
	case c.AuthURL != "":
		if msg := checkHTTPURL(c.AuthURL, "http://127.0.0.1:3000/auth/webhooks"); msg != "" {
			errs.add(errorf("RELAY_AUTH_URL", "%s", msg))
		}
	}
	if c.UpstreamURL != "" && sameListener(c.ListenAddr, c.AdminAddr) {
		errs.add(errorf("RELAY_ADMIN_ADDR", "%q is also RELAY_LISTEN_ADDR; the operator API must not share the public port", c.AdminAddr))
	}
	if c.AuthCacheTTL < 0 || (c.AuthCacheTTL > 0 && c.AuthCacheTTL < defaults.MinAuthCacheTTL) {
		errs.add(errorf("RELAY_AUTH_CACHE_TTL", "must be 0 (off) or at least %s, got %s", defaults.MinAuthCacheTTL, c.AuthCacheTTL))
	}
	if msg := CheckFrameAncestors(c.ConsoleFrameAncestors); msg != "" {
		errs.add(errorf("RELAY_CONSOLE_FRAME_ANCESTORS", "%s", msg))
	}
	if len(c.ConsoleTitle) > 100 || strings.IndexFunc(c.ConsoleTitle, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
		errs.add(errorf("RELAY_CONSOLE_TITLE", "must be one line of at most 100 bytes"))
	}
	return errs.err()
}

// CheckFrameAncestors answers what is wrong with a CSP frame-ancestors source list, or "":
// sources separated by spaces, without ';' or ',' (which would end the directive, or the
// policy, and let the value write a policy of its own). Empty means the default, 'self'.
func CheckFrameAncestors(v string) string {
	if strings.ContainsAny(v, ";,\r\n\x00\"<>") {
		return "want CSP sources separated by spaces, such as 'self' https://app.example.com, without ';', ',', '\"', '<' or '>'"
	}
	return ""
}

// checkDatabaseURL accepts what lib/pq would connect with, without connecting: the relay
// retries connection errors forever (the database may come later), so a setting lib/pq or
// PostgreSQL can never accept must stop start-up here instead. Its message never contains
// the value, which may hold a password.
func checkDatabaseURL(s string) string {
	const want = "want postgres://user:password@host:5432/db or a key=value DSN"
	if i := strings.Index(s, "://"); i >= 0 {
		// lib/pq takes a URL only with these exact, lowercase schemes; it would read
		// anything else as a key=value DSN and fail.
		switch s[:i] {
		case "postgres", "postgresql":
		default:
			return "invalid URL: scheme must be postgres:// or postgresql:// (" + want + ")"
		}
		// Parsed here rather than by lib/pq, whose error quotes the whole URL.
		if _, err := url.Parse(s); err != nil {
			return "invalid URL: percent-encode special characters in the user name and password (" + want + ")"
		}
	} else if !strings.Contains(s, "=") {
		return "invalid URL (" + want + ")"
	}

	cfg, err := pq.NewConfig(s)
	if err != nil {
		return pqMessage(err, want)
	}
	for k := range cfg.Runtime {
		if libpqOnly[k] {
			return fmt.Sprintf("setting %q is a libpq option that lib/pq does not support: it would be sent to PostgreSQL as a run-time parameter and every connection refused; remove it", k)
		}
	}
	if msg := probeTLSFiles(cfg); msg != "" {
		return msg
	}
	return ""
}

// pqSafe are the beginnings of lib/pq's parse errors that name a setting, its (never
// secret) value or a rule. Any other message is withheld: some quote the connection string,
// and with it the password (a key without "=" after an unquoted password with a space, a
// line of a service file).
var pqSafe = []string{
	"wrong value for ", "unsupported client_encoding", "unsupported datestyle", "could not match ",
	"weak sslmode ", "min_protocol_version ", "unterminated quoted string", "missing character after backslash",
	"environment variable $",
}

func pqMessage(err error, want string) string {
	msg := strings.TrimPrefix(err.Error(), "pq: ")
	switch {
	case strings.HasPrefix(msg, `missing "=" after `):
		return `invalid key=value DSN: a word without "=" (quote values with spaces: password='a b'; ` + want + ")"
	case strings.HasPrefix(msg, "user: "):
		// os/user: lib/pq falls back to the process's user name, which a container running
		// under an arbitrary UID may not have.
		return "names no user, and this process's user name is unknown (" + msg + "); " + want
	}
	for _, p := range pqSafe {
		if strings.HasPrefix(msg, p) {
			return msg
		}
	}
	return "lib/pq cannot use it (its message is withheld: it may quote the password; " + want + ")"
}

// libpqOnly are libpq's connection settings that lib/pq does not know. lib/pq passes unknown
// settings on to PostgreSQL as run-time parameters (search_path=... is legitimate), and
// PostgreSQL refuses these with "unrecognized configuration parameter" on every connection.
// (tcp_user_timeout and replication are missing on purpose: PostgreSQL accepts them.)
var libpqOnly = map[string]bool{
	"keepalives": true, "keepalives_idle": true, "keepalives_interval": true, "keepalives_count": true,
	"gssencmode": true, "gsslib": true, "gssdelegation": true, "channel_binding": true, "require_auth": true,
	"requiressl": true, "sslcompression": true, "sslpassword": true, "sslcertmode": true, "sslcrl": true,
	"sslcrldir": true, "sslkeylogfile": true, "requirepeer": true,
}

// probeTLSFiles runs lib/pq's connect path over a connection that fails at its first
// write. lib/pq reads sslrootcert, sslcert and sslkey (or the files under ~/.postgresql)
// only when it connects, before it writes anything: a missing or unreadable file, a key
// with loose permissions or PEM that does not parse ends the probe with its own error.
func probeTLSFiles(cfg pq.Config) string {
	c, err := pq.NewConnectorConfig(cfg)
	if err != nil {
		return "lib/pq cannot use it: " + err.Error()
	}
	c.Dialer(closedPipeDialer{})
	conn, err := c.Connect(context.Background())
	if err == nil { // not expected: nothing answers
		_ = conn.Close()
		return ""
	}
	if errors.Is(err, io.ErrClosedPipe) {
		return ""
	}
	return "TLS settings: " + oneLine(strings.TrimPrefix(err.Error(), "pq: "))
}

// closedPipeDialer hands lib/pq one end of a pipe whose other end is closed, so its first
// write fails with io.ErrClosedPipe and nothing goes over a network.
type closedPipeDialer struct{}

func (closedPipeDialer) Dial(string, string) (net.Conn, error) {
	client, server := net.Pipe()
	_ = server.Close()
	return client, nil
}

func (d closedPipeDialer) DialTimeout(network, address string, _ time.Duration) (net.Conn, error) {
	return d.Dial(network, address)
}

func checkAddr(s, example string) string {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Sprintf("invalid address %q (want host:port, e.g. %s)", s, example)
	}
	if strings.ContainsAny(host, " /") {
		return fmt.Sprintf("invalid host in address %q (want host:port, e.g. %s)", s, example)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Sprintf("invalid port in address %q (want host:port, e.g. %s)", s, example)
	}
	return ""
}

// sameListener reports whether two valid addresses would collide. It is
// conservative: only identical ports where one host is the wildcard or both
// hosts are equal.
func sameListener(a, b string) bool {
	ha, pa, errA := net.SplitHostPort(a)
	hb, pb, errB := net.SplitHostPort(b)
	if errA != nil || errB != nil || pa != pb || pa == "0" {
		return false
	}
	return ha == hb || ha == "" || hb == ""
}

// checkHTTPURL wants an absolute http(s) URL with a host. Only the redacted
// form of the URL is echoed, so user info never reaches a log.
func checkHTTPURL(s, example string) string {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Sprintf("invalid URL (want an absolute http(s) URL, e.g. %s)", example)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Sprintf("invalid URL %q (want an absolute http(s) URL, e.g. %s)", u.Redacted(), example)
	}
	return ""
}

func checkPrefix(p string) string {
	const want = `want a path like /webhooks: starting with "/", not ending with "/"`
	switch {
	case !strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/"):
		return fmt.Sprintf("invalid prefix %q (%s)", p, want)
	case strings.ContainsAny(p, "?#%* \t") || path.Clean(p) != p:
		return fmt.Sprintf("invalid prefix %q (%s, a clean path without ?, #, %%, * or spaces)", p, want)
	}
	return ""
}

// DurationList is a comma-separated list of Go durations, such as
// RELAY_RETRY_SCHEDULE. Spaces around elements are ignored; the empty string
// is the empty list. It is assignable to and from []time.Duration.
type DurationList []time.Duration

// Decode implements envconfig.Decoder.
func (l *DurationList) Decode(value string) error {
	const want = "want comma-separated durations, e.g. 1m,5m,15m,1h"
	out, err := decodeList(value, "delay", want, func(p string, pos int) (time.Duration, error) {
		d, err := time.ParseDuration(p)
		if err != nil {
			return 0, decodeErrorf("invalid duration %q in position %d (%s)", p, pos, want)
		}
		return d, nil
	})
	if err == nil {
		*l = out
	}
	return err
}

// decodeList parses a comma-separated value, each element trimmed and given to parse with
// its position (from 1); an empty element is an error naming it as noun, and a value of
// spaces only is the empty list. Every list variable is read by it.
func decodeList[T any](value, noun, want string, parse func(p string, pos int) (T, error)) ([]T, error) {
	if strings.TrimSpace(value) == "" {
		return []T{}, nil
	}
	parts := strings.Split(value, ",")
	out := make([]T, 0, len(parts))
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" {
			return nil, decodeErrorf("%s %d is empty (%s)", noun, i+1, want)
		}
		v, err := parse(p, i+1)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// String formats the list as it is written in the environment.
func (l DurationList) String() string {
	s := make([]string, len(l))
	for i, d := range l {
		s[i] = shortDuration(d)
	}
	return strings.Join(s, ",")
}

// CIDRList is a comma-separated list of CIDRs, such as RELAY_ALLOW_PRIVATE_CIDRS; an address
// alone is its /32 or /128. Every element must pass targets.CheckAllowedCIDR. Spaces around
// elements are ignored; the empty string is the empty list. It is assignable to and from
// []netip.Prefix.
type CIDRList []netip.Prefix

// Decode implements envconfig.Decoder.
func (l *CIDRList) Decode(value string) error {
	out, err := decodeList(value, "CIDR", "want comma-separated CIDRs, e.g. 10.20.0.0/16,192.168.7.0/24", func(p string, _ int) (netip.Prefix, error) {
		pfx, err := targets.CheckAllowedCIDR(p)
		if err != nil {
			return netip.Prefix{}, decodeErrorf("%s", err)
		}
		return pfx, nil
	})
	if err == nil {
		*l = out
	}
	return err
}

// String formats the list as it is written in the environment.
func (l CIDRList) String() string {
	s := make([]string, len(l))
	for i, p := range l {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// Key is an encryption key decoded from base64 (standard or URL-safe alphabet,
// with or without padding). It is assignable to and from []byte. Its String
// and GoString never show the key.
type Key []byte

var keyEncodings = []*base64.Encoding{
	base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding,
}

// Decode implements envconfig.Decoder. The error never contains the value.
func (k *Key) Decode(value string) error {
	value = strings.TrimSpace(value)
	if value == "" {
		*k = nil
		return nil
	}
	for _, enc := range keyEncodings {
		b, err := enc.DecodeString(value)
		if err != nil {
			continue
		}
		if len(b) != KeySize {
			return decodeErrorf("key decodes to %d bytes, want exactly %d (generate one with: openssl rand -base64 32)", len(b), KeySize)
		}
		*k = b
		return nil
	}
	return decodeErrorf("not valid base64 (want base64 of 32 random bytes; generate one with: openssl rand -base64 32)")
}

// String masks the key.
func (k Key) String() string {
	if len(k) == 0 {
		return ""
	}
	return redacted
}

// GoString masks the key for %#v.
func (k Key) GoString() string { return "config.Key(" + strconv.Quote(k.String()) + ")" }

// MarshalJSON masks the key; without it encoding/json would write it out in
// base64.
func (k Key) MarshalJSON() ([]byte, error) { return json.Marshal(k.String()) }

const redacted = "[redacted]"

// LogFields returns the effective configuration for the start-up log, in the
// form zerolog's Event.Fields takes: each variable's name followed by its
// value as it would be written in the environment, in field order. Secrets are
// masked: the API token and keys become "[redacted]" when set (an empty token
// stays empty, so the line shows that auth is off), the database URLs keep
// everything but their password.
func (c Config) LogFields() []any {
	pairs := c.redactedPairs()
	out := make([]any, 0, 2*len(pairs))
	for _, kv := range pairs {
		out = append(out, kv[0], kv[1])
	}
	return out
}

// String is LogFields as NAME=value pairs, so that printing a Config with %v
// never shows a secret.
func (c Config) String() string {
	pairs := c.redactedPairs()
	s := make([]string, len(pairs))
	for i, kv := range pairs {
		s[i] = kv[0] + "=" + strconv.Quote(kv[1])
	}
	return strings.Join(s, " ")
}

// GoString makes %#v as safe as %v.
func (c Config) GoString() string { return "config.Config{" + c.String() + "}" }

// MarshalJSON writes the masked values of LogFields as an object, so that a
// Config handed to a JSON logger (zerolog's Interface, say) never shows a
// secret either.
func (c Config) MarshalJSON() ([]byte, error) {
	m := make(map[string]string)
	for _, kv := range c.redactedPairs() {
		m[kv[0]] = kv[1]
	}
	return json.Marshal(m)
}

func (c Config) redactedPairs() [][2]string {
	v := reflect.ValueOf(c)
	var out [][2]string
	for _, f := range fields() {
		fv := v.Field(f.index)
		var s string
		switch {
		case f.secret == "password":
			s = redactDatabaseURL(fv.String())
		case f.secret != "":
			if fv.Len() > 0 {
				s = redacted
			}
		default:
			s = formatValue(fv)
		}
		out = append(out, [2]string{f.name, s})
	}
	return out
}

func formatValue(v reflect.Value) string {
	switch x := v.Interface().(type) {
	case time.Duration:
		return shortDuration(x)
	case fmt.Stringer:
		return x.String()
	}
	switch v.Kind() {
	case reflect.String:
		s := v.String()
		if u, err := url.Parse(s); err == nil && u.User != nil {
			return u.Redacted()
		}
		return s
	case reflect.Bool:
		return strconv.FormatBool(v.Bool())
	case reflect.Int:
		return strconv.FormatInt(v.Int(), 10)
	}
	return fmt.Sprint(v.Interface())
}

var dsnPasswordRe = regexp.MustCompile(`(?i)\b((?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s]*)`)

func redactDatabaseURL(s string) string {
	if s == "" {
		return ""
	}
	if !strings.Contains(s, "://") {
		return dsnPasswordRe.ReplaceAllString(s, "${1}xxxxx")
	}
	u, err := url.Parse(s)
	if err != nil {
		return "(invalid URL, hidden)"
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	q := u.Query()
	changed := false
	for k := range q {
		if strings.EqualFold(k, "password") || strings.EqualFold(k, "sslpassword") {
			q.Set(k, "xxxxx")
			changed = true
		}
	}
	if changed {
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// shortDuration drops the zero tails of time.Duration.String: 1h, not 1h0m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// Usage writes the table of every variable: name, type, default (or
// "required") and description, aligned in columns.
func Usage(w io.Writer) error {
	tmpl, err := template.New("usage").Funcs(template.FuncMap{
		"typeName":     typeName,
		"defaultValue": defaultValue,
	}).Parse(usageTemplate)
	if err != nil {
		return fmt.Errorf("parsing usage template: %w", err)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	// The template reads each default from the fields of defaultConfig.
	def := defaultConfig()
	if err := envconfig.Usaget("", &def, tw, tmpl); err != nil {
		return fmt.Errorf("writing usage: %w", err)
	}
	return tw.Flush()
}

const usageTemplate = "VARIABLE\tTYPE\tDEFAULT\tDESCRIPTION\n" +
	`{{range .}}{{.Key}}	{{typeName .Field}}	{{defaultValue .Field .Tags}}	{{.Tags.Get "desc"}}` + "\n{{end}}"

func typeName(v reflect.Value) string {
	switch v.Type() {
	case reflect.TypeFor[time.Duration]():
		return "duration"
	case reflect.TypeFor[DurationList]():
		return "durations"
	case reflect.TypeFor[CIDRList]():
		return "cidrs"
	case reflect.TypeFor[Key]():
		return "base64"
	}
	switch v.Kind() {
	case reflect.Bool:
		return "bool"
	case reflect.Int:
		return "int"
	}
	return "string"
}

// defaultValue is the DEFAULT column for a field of defaultConfig: its value
// as it would be written in the environment. A false bool is a default like
// any other; an empty value is none.
func defaultValue(field reflect.Value, tags reflect.StructTag) string {
	if d := tags.Get("usagedefault"); d != "" {
		return d
	}
	if d := formatValue(field); d != "" {
		return d
	}
	if tags.Get("required") == "true" {
		return "(required)"
	}
	return "-"
}

// field is what Load, LogFields and the tests need to know of a Config field.
type field struct {
	index    int
	name     string // the variable
	required bool
	secret   string // the secret tag: "", "true" or "password"
}

func fields() []field {
	t := reflect.TypeFor[Config]()
	out := make([]field, 0, t.NumField())
	for i := range t.NumField() {
		sf := t.Field(i)
		out = append(out, field{
			index:    i,
			name:     sf.Tag.Get("envconfig"),
			required: sf.Tag.Get("required") == "true",
			secret:   sf.Tag.Get("secret"),
		})
	}
	return out
}

func isSecret(name string) bool {
	for _, f := range fields() {
		if f.name == name {
			return f.secret != ""
		}
	}
	return false
}

// convertError turns envconfig's long error into one line naming the
// variable. The raw value is echoed only for variables that are not secret.
func convertError(err error) *Error {
	var pe *envconfig.ParseError
	if !errors.As(err, &pe) {
		// Not expected: Load checks required variables itself and Config is
		// a valid specification. Keep it one line without envconfig's prefix.
		return &Error{Var: "RELAY", Msg: oneLine(strings.TrimPrefix(err.Error(), "envconfig.Process: "))}
	}
	name := pe.KeyName
	// The Decoders of this package write messages that are safe to show.
	var de *decodeError
	if errors.As(pe.Err, &de) {
		return errorf(name, "%s", de.msg)
	}
	if isSecret(name) {
		return errorf(name, "invalid value")
	}
	switch pe.TypeName {
	case "time.Duration":
		return errorf(name, "invalid duration %q (want e.g. 500ms, 1s)", pe.Value)
	case "int":
		if errors.Is(pe.Err, strconv.ErrRange) {
			return errorf(name, "number %q is out of range", pe.Value)
		}
		return errorf(name, "invalid number %q (want a whole number, e.g. 100)", pe.Value)
	case "bool":
		return errorf(name, "invalid boolean %q (want true or false)", pe.Value)
	}
	return errorf(name, "invalid value %q", pe.Value)
}

// decodeError is returned by this package's Decoders; its message never
// contains a secret and is shown as is after the variable's name.
type decodeError struct{ msg string }

func (e *decodeError) Error() string { return e.msg }

func decodeErrorf(format string, args ...any) error {
	return &decodeError{msg: fmt.Sprintf(format, args...)}
}

// oneLine keeps an error a single log line whatever went into it.
func oneLine(s string) string {
	return strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s)
}
