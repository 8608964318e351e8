package config

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

// Distinctive secrets, so a test can prove none of them leaks.
const (
	testToken    = "tok-SECRET-a1b2c3"
	testPassword = "pw-SECRET-d4e5f6"
	testDBURL    = "postgres://relay:" + testPassword + "@db.internal:5432/app?sslmode=disable"
)

// testKey encodes differently in the standard and URL-safe alphabets.
var testKey = bytes.Repeat([]byte{0xfb, 0xff, 0xbf, 0x3e}, 8)

// setEnv gives the test exactly env: every RELAY_ variable already in the
// process is removed (and restored after the test), and so are the unprefixed
// names envconfig could fall back to.
func setEnv(t *testing.T, env map[string]string) {
	t.Helper()
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "RELAY_") {
			unsetEnv(t, name)
		}
	}
	for _, f := range fields() {
		unsetEnv(t, strings.TrimPrefix(f.name, "RELAY_"))
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
}

func unsetEnv(t *testing.T, name string) {
	t.Helper()
	t.Setenv(name, "") // registers the restore
	require.NoError(t, os.Unsetenv(name))
}

// baseEnv is the smallest environment that loads.
func baseEnv(extra map[string]string) map[string]string {
	env := map[string]string{
		"RELAY_DATABASE_URL": testDBURL,
		"RELAY_API_TOKEN":    testToken,
	}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

func TestLoadDefaults(t *testing.T) {
	setEnv(t, baseEnv(nil))

	c, err := Load()
	require.NoError(t, err)
	require.Equal(t, Config{
		DatabaseURL:                testDBURL,
		ListenDatabaseURL:          testDBURL,
		APIToken:                   testToken,
		InsecureNoAuth:             false,
		Schema:                     "relay",
		AutoMigrate:                true,
		NotifyTrigger:              true,
		ListenAddr:                 ":8080",
		OpsAddr:                    ":9090",
		AdminAddr:                  "127.0.0.1:8081",
		DBMaxConns:                 4,
		PollInterval:               time.Second,
		BatchSize:                  100,
		Workers:                    64,
		DeliveryTimeout:            5 * time.Second,
		RetrySchedule:              DurationList{time.Minute, 5 * time.Minute, 15 * time.Minute, time.Hour},
		MaxPayloadBytes:            262144,
		DisableAfter:               120 * time.Hour,
		MaxInFlightPerSubscription: 16,
		SecretRotationOverlap:      24 * time.Hour,
		Retention:                  168 * time.Hour,
		ShutdownGrace:              25 * time.Second,
		AllowHTTP:                  false,
		AllowPrivateTargets:        false,
		EncryptionKey:              nil,
		EncryptionKeyPrevious:      nil,
		LogFormat:                  "json",
		LogLevel:                   "info",
		UpstreamURL:                "",
		ProxyPrefix:                "/webhooks",
		AuthURL:                    "",
		AuthCacheTTL:               10 * time.Second,
		Console:                    true,
		ConsoleTitle:               "outbox-relay",
		ConsoleFrameAncestors:      "'self'",
	}, c)

	// The named types stay usable where plain slices are expected.
	var schedule []time.Duration = c.RetrySchedule
	var key []byte = c.EncryptionKey
	require.Len(t, schedule, 4)
	require.Nil(t, key)
}

func TestLoadValues(t *testing.T) {
	otherKey := bytes.Repeat([]byte{7}, KeySize)
	setEnv(t, map[string]string{
		"RELAY_DATABASE_URL":                   "  host=pgbouncer port=6432 dbname=app password='a b'  ",
		"RELAY_LISTEN_DATABASE_URL":            "postgresql://relay@db.internal/app",
		"RELAY_API_TOKEN":                      testToken + "\n",
		"RELAY_SCHEMA":                         "_webhooks2",
		"RELAY_AUTO_MIGRATE":                   "false",
		"RELAY_NOTIFY_TRIGGER":                 "0",
		"RELAY_LISTEN_ADDR":                    "0.0.0.0:80",
		"RELAY_OPS_ADDR":                       "[::1]:9100",
		"RELAY_ADMIN_ADDR":                     "localhost:81",
		"RELAY_POLL_INTERVAL":                  "250ms",
		"RELAY_BATCH_SIZE":                     "10000",
		"RELAY_WORKERS":                        "1",
		"RELAY_DELIVERY_TIMEOUT":               "30s",
		"RELAY_RETRY_SCHEDULE":                 " 10s, 1m ,1h30m",
		"RELAY_MAX_PAYLOAD_BYTES":              "1024",
		"RELAY_DISABLE_AFTER":                  "72h",
		"RELAY_MAX_IN_FLIGHT_PER_SUBSCRIPTION": "1",
		"RELAY_SECRET_ROTATION_OVERLAP":        "0s",
		"RELAY_RETENTION":                      "720h",
		"RELAY_SHUTDOWN_GRACE":                 "0",
		"RELAY_ALLOW_HTTP":                     "true",
		"RELAY_ALLOW_PRIVATE_TARGETS":          "TRUE",
		"RELAY_ENCRYPTION_KEY":                 base64.URLEncoding.EncodeToString(testKey),
		"RELAY_ENCRYPTION_KEY_PREVIOUS":        base64.RawStdEncoding.EncodeToString(otherKey),
		"RELAY_LOG_FORMAT":                     "Console",
		"RELAY_LOG_LEVEL":                      "DEBUG",
		"RELAY_UPSTREAM_URL":                   "http://127.0.0.1:3000",
		"RELAY_PROXY_PREFIX":                   "/api/hooks",
		"RELAY_AUTH_URL":                       "http://127.0.0.1:3000/auth/check",
		"RELAY_AUTH_CACHE_TTL":                 "0s",
		"RELAY_ALLOW_PRIVATE_CIDRS":            " 10.20.0.0/16 , 192.168.7.9, fd12:3456::/32",
		"RELAY_EGRESS_PROXY":                   "http://relay:" + testPassword + "@smokescreen.egress:4750",
		"RELAY_EGRESS_PROXY_ENFORCES_SSRF":     "true",
	})

	c, err := Load()
	require.NoError(t, err)
	require.Equal(t, "host=pgbouncer port=6432 dbname=app password='a b'", c.DatabaseURL)
	require.Equal(t, "postgresql://relay@db.internal/app", c.ListenDatabaseURL)
	require.Equal(t, testToken, c.APIToken, "surrounding whitespace is trimmed")
	require.Equal(t, "_webhooks2", c.Schema)
	require.False(t, c.AutoMigrate)
	require.False(t, c.NotifyTrigger)
	require.Equal(t, "0.0.0.0:80", c.ListenAddr)
	require.Equal(t, "[::1]:9100", c.OpsAddr)
	require.Equal(t, "localhost:81", c.AdminAddr)
	require.Equal(t, 250*time.Millisecond, c.PollInterval)
	require.Equal(t, 10000, c.BatchSize)
	require.Equal(t, 1, c.Workers)
	require.Equal(t, 30*time.Second, c.DeliveryTimeout)
	require.Equal(t, DurationList{10 * time.Second, time.Minute, 90 * time.Minute}, c.RetrySchedule)
	require.Equal(t, 1024, c.MaxPayloadBytes)
	require.Equal(t, 72*time.Hour, c.DisableAfter)
	require.Equal(t, 1, c.MaxInFlightPerSubscription)
	require.Zero(t, c.SecretRotationOverlap)
	require.Equal(t, 720*time.Hour, c.Retention)
	require.Zero(t, c.ShutdownGrace)
	require.True(t, c.AllowHTTP)
	require.True(t, c.AllowPrivateTargets)
	require.Equal(t, testKey, []byte(c.EncryptionKey))
	require.Equal(t, otherKey, []byte(c.EncryptionKeyPrevious))
	require.Equal(t, "console", c.LogFormat)
	require.Equal(t, "debug", c.LogLevel)
	require.Equal(t, "http://127.0.0.1:3000", c.UpstreamURL)
	require.Equal(t, "/api/hooks", c.ProxyPrefix)
	require.Equal(t, "http://127.0.0.1:3000/auth/check", c.AuthURL)
	require.Zero(t, c.AuthCacheTTL)
	require.Equal(t, "10.20.0.0/16,192.168.7.9/32,fd12:3456::/32", c.AllowPrivateCIDRs.String())
	require.Equal(t, "http://relay:"+testPassword+"@smokescreen.egress:4750", c.EgressProxy)
	require.True(t, c.EgressProxyEnforcesSSRF)
	r := logged(t, c)
	require.Equal(t, "http://relay:xxxxx@smokescreen.egress:4750", r["RELAY_EGRESS_PROXY"], "masked like the database URL")
	require.Equal(t, "10.20.0.0/16,192.168.7.9/32,fd12:3456::/32", r["RELAY_ALLOW_PRIVATE_CIDRS"])
	require.NotContains(t, c.String()+logLine(c), testPassword)
}

func TestLoadEmptyRetryScheduleMeansNoRetries(t *testing.T) {
	setEnv(t, baseEnv(map[string]string{"RELAY_RETRY_SCHEDULE": ""}))

	c, err := Load()
	require.NoError(t, err)
	require.Empty(t, c.RetrySchedule)
}

func TestLoadEmptyListenDatabaseURLFallsBack(t *testing.T) {
	setEnv(t, baseEnv(map[string]string{"RELAY_LISTEN_DATABASE_URL": ""}))

	c, err := Load()
	require.NoError(t, err)
	require.Equal(t, testDBURL, c.ListenDatabaseURL)
}

func TestLoadEncryptionKeyEncodings(t *testing.T) {
	for name, enc := range map[string]*base64.Encoding{
		"Std":    base64.StdEncoding,
		"RawStd": base64.RawStdEncoding,
		"URL":    base64.URLEncoding,
		"RawURL": base64.RawURLEncoding,
	} {
		t.Run(name, func(t *testing.T) {
			setEnv(t, baseEnv(map[string]string{"RELAY_ENCRYPTION_KEY": enc.EncodeToString(testKey) + "\n"}))

			c, err := Load()
			require.NoError(t, err)
			require.Equal(t, testKey, []byte(c.EncryptionKey))
		})
	}
}

func TestLoadInsecureNoAuth(t *testing.T) {
	t.Run("EmptyTokenAndInsecureIsAccepted", func(t *testing.T) {
		setEnv(t, baseEnv(map[string]string{"RELAY_API_TOKEN": "", "RELAY_INSECURE_NO_AUTH": "true"}))

		c, err := Load()
		require.NoError(t, err)
		require.True(t, c.InsecureNoAuth)
		require.Empty(t, c.APIToken)
	})

	t.Run("UnsetTokenAndInsecureIsRefused", func(t *testing.T) {
		env := baseEnv(map[string]string{"RELAY_INSECURE_NO_AUTH": "true"})
		delete(env, "RELAY_API_TOKEN")
		setEnv(t, env)

		_, err := Load()
		requireConfigError(t, err, "RELAY_API_TOKEN")
	})
}

// TestLoadSchemaAtTheChannelLimit: RELAY_SCHEMA follows outbox.CheckSchemaName, whose
// NOTIFY channel <schema>_outbox must fit in 63 bytes.
func TestLoadSchemaAtTheChannelLimit(t *testing.T) {
	longest := strings.Repeat("s", 56)
	setEnv(t, baseEnv(map[string]string{"RELAY_SCHEMA": longest}))
	c, err := Load()
	require.NoError(t, err)
	require.Equal(t, longest, c.Schema)

	setEnv(t, baseEnv(map[string]string{"RELAY_SCHEMA": longest + "s"}))
	_, err = Load()
	requireConfigError(t, err, "RELAY_SCHEMA")
	require.Contains(t, err.Error(), "want at most 56")
}

// TestLoadIgnoresUnprefixedNames guards against envconfig's fallback from
// RELAY_X to X: an application's own DATABASE_URL or API_TOKEN in the same
// pod must not configure the relay.
func TestLoadIgnoresUnprefixedNames(t *testing.T) {
	setEnv(t, map[string]string{
		"DATABASE_URL": testDBURL,
		"API_TOKEN":    testToken,
	})
	_, err := Load()
	require.Equal(t, []string{"RELAY_DATABASE_URL", "RELAY_API_TOKEN"}, problemVars(t, err))

	setEnv(t, baseEnv(map[string]string{"SCHEMA": "other", "WORKERS": "3"}))
	c, err := Load()
	require.NoError(t, err)
	require.Equal(t, "relay", c.Schema)
	require.Equal(t, 64, c.Workers)
}

// problemVars answers the variables err names, in order: one for an *Error, every one for
// Errors, whose message has a line for each.
func problemVars(t *testing.T, err error) []string {
	t.Helper()
	require.Error(t, err)
	var es Errors
	if !errors.As(err, &es) {
		var e *Error
		require.True(t, errors.As(err, &e), "want *config.Error or config.Errors, got %T: %v", err, err)
		return []string{e.Var}
	}
	msg := err.Error()
	lines := strings.Split(msg, "\n")
	require.Equal(t, fmt.Sprintf("%d configuration problems:", len(es)), lines[0])
	require.Len(t, lines, len(es)+1, msg)
	var first *Error
	require.True(t, errors.As(err, &first))
	require.Same(t, es[0], first, "errors.As finds the first")
	vars := make([]string, len(es))
	for i, e := range es {
		vars[i] = e.Var
		require.Equal(t, "  "+e.Error(), lines[i+1])
	}
	return vars
}

// TestLoadReportsEveryProblem: a user who got four variables wrong learns of all four from
// one start, not one per attempt.
func TestLoadReportsEveryProblem(t *testing.T) {
	setEnv(t, baseEnv(map[string]string{
		"RELAY_WORKERS":        "many",
		"RELAY_POLL_INTERVAL":  "-1s",
		"RELAY_LOG_LEVEL":      "loud",
		"RELAY_WORKER":         "8",
		"RELAY_API_TOKEN":      testToken,
		"RELAY_ENCRYPTION_KEY": "not*base64*" + testToken,
	}))
	c, err := Load()
	require.Zero(t, c)
	require.Equal(t, []string{"RELAY_WORKER", "RELAY_WORKERS", "RELAY_ENCRYPTION_KEY", "RELAY_POLL_INTERVAL", "RELAY_LOG_LEVEL"}, problemVars(t, err))
	msg := err.Error()
	for _, want := range []string{
		"RELAY_WORKER: unknown variable; did you mean RELAY_WORKERS?",
		`RELAY_WORKERS: invalid number "many"`,
		"RELAY_POLL_INTERVAL: must be greater than 0, got -1s",
		`RELAY_LOG_LEVEL: invalid log level "loud"`,
		"RELAY_ENCRYPTION_KEY: ",
	} {
		require.Contains(t, msg, want)
	}
	require.NotContains(t, msg, testToken, "an error leaks a secret")
}

func TestLoadUnknownVariables(t *testing.T) {
	setEnv(t, baseEnv(map[string]string{
		"RELAY_POLL_INTERVALL":      "2s",
		"RELAY_TOKEN":               "x",
		"RELAY_QQQQQQQQQQ":          "x",
		"RELAY_TEST_DATABASE_URL":   "postgres://test tooling",
		"RELAY_SERVICE_HOST":        "10.0.0.1",
		"RELAY_SERVICE_PORT_HTTP":   "8080",
		"RELAY_PORT":                "tcp://10.0.0.1:8080",
		"RELAY_PORT_8080_TCP_ADDR":  "10.0.0.1",
		"RELAY_PORT_9090_TCP_PROTO": "tcp",
	}))
	_, err := Load()
	require.Equal(t, []string{"RELAY_POLL_INTERVALL", "RELAY_QQQQQQQQQQ", "RELAY_TOKEN"}, problemVars(t, err))
	msg := err.Error()
	require.Contains(t, msg, "RELAY_POLL_INTERVALL: unknown variable; did you mean RELAY_POLL_INTERVAL? (outbox-relay help lists every variable)")
	require.Contains(t, msg, "RELAY_TOKEN: unknown variable; did you mean RELAY_API_TOKEN?")
	require.Contains(t, msg, "RELAY_QQQQQQQQQQ: unknown variable (outbox-relay help lists every variable)")
}

func TestLoadErrors(t *testing.T) {
	key16 := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xab}, 16))
	key32 := base64.StdEncoding.EncodeToString(testKey)
	badKey := "not*base64*" + testToken
	noToken := baseEnv(nil)
	delete(noToken, "RELAY_API_TOKEN")
	noDB := baseEnv(nil)
	delete(noDB, "RELAY_DATABASE_URL")

	tests := []struct {
		name    string
		env     map[string]string
		wantVar string
		want    string // a part of the message
	}{
		{"MissingDatabaseURL", noDB, "RELAY_DATABASE_URL", "is required"},
		{"EmptyDatabaseURL", baseEnv(map[string]string{"RELAY_DATABASE_URL": " "}), "RELAY_DATABASE_URL", "is required"},
		{"DatabaseURLNotPostgres", baseEnv(map[string]string{"RELAY_DATABASE_URL": "mysql://root:" + testPassword + "@db/app?x=y"}), "RELAY_DATABASE_URL", "invalid URL"},
		{"DatabaseURLUnparsable", baseEnv(map[string]string{"RELAY_DATABASE_URL": "postgres://relay:" + testPassword + "@db:port/app"}), "RELAY_DATABASE_URL", "invalid URL"},
		{"DatabaseURLNoDSN", baseEnv(map[string]string{"RELAY_DATABASE_URL": testPassword}), "RELAY_DATABASE_URL", "invalid URL"},
		{"BadListenDatabaseURL", baseEnv(map[string]string{"RELAY_LISTEN_DATABASE_URL": "http://x:" + testPassword + "@db"}), "RELAY_LISTEN_DATABASE_URL", "invalid URL"},
		{"MissingToken", noToken, "RELAY_API_TOKEN", "is required (or set it empty together with RELAY_INSECURE_NO_AUTH=true"},
		{"EmptyTokenWithoutInsecure", baseEnv(map[string]string{"RELAY_API_TOKEN": ""}), "RELAY_API_TOKEN", "is required"},
		{"TokenWithInsecure", baseEnv(map[string]string{"RELAY_INSECURE_NO_AUTH": "true"}), "RELAY_INSECURE_NO_AUTH", "RELAY_API_TOKEN is set"},
		{"BadInsecureBool", baseEnv(map[string]string{"RELAY_INSECURE_NO_AUTH": "yes"}), "RELAY_INSECURE_NO_AUTH", `invalid boolean "yes" (want true or false)`},
		{"SchemaUppercase", baseEnv(map[string]string{"RELAY_SCHEMA": "Relay"}), "RELAY_SCHEMA", `invalid schema name "Relay"`},
		{"SchemaDigitFirst", baseEnv(map[string]string{"RELAY_SCHEMA": "1relay"}), "RELAY_SCHEMA", "invalid schema name"},
		{"SchemaInjection", baseEnv(map[string]string{"RELAY_SCHEMA": `relay"; drop table x; --`}), "RELAY_SCHEMA", "invalid schema name"},
		{"SchemaEmpty", baseEnv(map[string]string{"RELAY_SCHEMA": ""}), "RELAY_SCHEMA", "invalid schema name"},
		{"SchemaTooLongForChannel", baseEnv(map[string]string{"RELAY_SCHEMA": strings.Repeat("a", 57)}), "RELAY_SCHEMA", "at most 56"},
		{"SchemaReserved", baseEnv(map[string]string{"RELAY_SCHEMA": "pg_relay"}), "RELAY_SCHEMA", "pg_"},
		{"ListenAddrNoPort", baseEnv(map[string]string{"RELAY_LISTEN_ADDR": "8080"}), "RELAY_LISTEN_ADDR", `invalid address "8080"`},
		{"OpsAddrBadPort", baseEnv(map[string]string{"RELAY_OPS_ADDR": ":http"}), "RELAY_OPS_ADDR", "invalid port"},
		{"OpsAddrSameAsListen", baseEnv(map[string]string{"RELAY_OPS_ADDR": "127.0.0.1:8080"}), "RELAY_OPS_ADDR", "also RELAY_LISTEN_ADDR"},
		{"AdminAddrBad", baseEnv(map[string]string{"RELAY_ADMIN_ADDR": "localhost"}), "RELAY_ADMIN_ADDR", "invalid address"},
		{"PollIntervalNotDuration", baseEnv(map[string]string{"RELAY_POLL_INTERVAL": "abc"}), "RELAY_POLL_INTERVAL", `invalid duration "abc" (want e.g. 500ms, 1s)`},
		{"PollIntervalNoUnit", baseEnv(map[string]string{"RELAY_POLL_INTERVAL": "5"}), "RELAY_POLL_INTERVAL", `invalid duration "5"`},
		{"PollIntervalZero", baseEnv(map[string]string{"RELAY_POLL_INTERVAL": "0s"}), "RELAY_POLL_INTERVAL", "greater than 0"},
		{"PollIntervalNegative", baseEnv(map[string]string{"RELAY_POLL_INTERVAL": "-1s"}), "RELAY_POLL_INTERVAL", "greater than 0"},
		{"BatchSizeNotNumber", baseEnv(map[string]string{"RELAY_BATCH_SIZE": "lots"}), "RELAY_BATCH_SIZE", `invalid number "lots"`},
		{"BatchSizeZero", baseEnv(map[string]string{"RELAY_BATCH_SIZE": "0"}), "RELAY_BATCH_SIZE", "between 1 and 10000"},
		{"BatchSizeTooLarge", baseEnv(map[string]string{"RELAY_BATCH_SIZE": "10001"}), "RELAY_BATCH_SIZE", "between 1 and 10000"},
		{"BatchSizeOverflow", baseEnv(map[string]string{"RELAY_BATCH_SIZE": "99999999999999999999"}), "RELAY_BATCH_SIZE", "out of range"},
		{"WorkersNegative", baseEnv(map[string]string{"RELAY_WORKERS": "-4"}), "RELAY_WORKERS", "between 1 and 10000"},
		{"WorkersFloat", baseEnv(map[string]string{"RELAY_WORKERS": "1.5"}), "RELAY_WORKERS", "invalid number"},
		{"DBMaxConnsOne", baseEnv(map[string]string{"RELAY_DB_MAX_CONNS": "1"}), "RELAY_DB_MAX_CONNS", "between 2 and 1000"},
		{"DBMaxConnsWord", baseEnv(map[string]string{"RELAY_DB_MAX_CONNS": "many"}), "RELAY_DB_MAX_CONNS", "invalid number"},
		{"DeliveryTimeoutZero", baseEnv(map[string]string{"RELAY_DELIVERY_TIMEOUT": "0"}), "RELAY_DELIVERY_TIMEOUT", "greater than 0"},
		{"RetryScheduleBadElement", baseEnv(map[string]string{"RELAY_RETRY_SCHEDULE": "1m,5x,1h"}), "RELAY_RETRY_SCHEDULE", `invalid duration "5x" in position 2`},
		{"RetryScheduleEmptyElement", baseEnv(map[string]string{"RELAY_RETRY_SCHEDULE": "1m,,1h"}), "RELAY_RETRY_SCHEDULE", "delay 2 is empty"},
		{"RetryScheduleZeroElement", baseEnv(map[string]string{"RELAY_RETRY_SCHEDULE": "1m,0s"}), "RELAY_RETRY_SCHEDULE", "delay 2 is 0s"},
		{"RetryScheduleNegativeElement", baseEnv(map[string]string{"RELAY_RETRY_SCHEDULE": "-1m"}), "RELAY_RETRY_SCHEDULE", "delay 1 is -1m0s"},
		{"MaxPayloadZero", baseEnv(map[string]string{"RELAY_MAX_PAYLOAD_BYTES": "0"}), "RELAY_MAX_PAYLOAD_BYTES", "greater than 0"},
		{"MaxPayloadUnit", baseEnv(map[string]string{"RELAY_MAX_PAYLOAD_BYTES": "256KiB"}), "RELAY_MAX_PAYLOAD_BYTES", "invalid number"},
		{"DisableAfterZero", baseEnv(map[string]string{"RELAY_DISABLE_AFTER": "0h"}), "RELAY_DISABLE_AFTER", "greater than 0"},
		{"DisableAfterDays", baseEnv(map[string]string{"RELAY_DISABLE_AFTER": "5d"}), "RELAY_DISABLE_AFTER", `invalid duration "5d"`},
		{"MaxInFlightZero", baseEnv(map[string]string{"RELAY_MAX_IN_FLIGHT_PER_SUBSCRIPTION": "0"}), "RELAY_MAX_IN_FLIGHT_PER_SUBSCRIPTION", "at least 1"},
		{"RotationOverlapNegative", baseEnv(map[string]string{"RELAY_SECRET_ROTATION_OVERLAP": "-1h"}), "RELAY_SECRET_ROTATION_OVERLAP", "must not be negative"},
		{"RetentionZero", baseEnv(map[string]string{"RELAY_RETENTION": "0s"}), "RELAY_RETENTION", "greater than 0"},
		{"ShutdownGraceNegative", baseEnv(map[string]string{"RELAY_SHUTDOWN_GRACE": "-5s"}), "RELAY_SHUTDOWN_GRACE", "must not be negative"},
		{"AllowHTTPBadBool", baseEnv(map[string]string{"RELAY_ALLOW_HTTP": "on"}), "RELAY_ALLOW_HTTP", "invalid boolean"},
		{"EncryptionKeyNotBase64", baseEnv(map[string]string{"RELAY_ENCRYPTION_KEY": badKey}), "RELAY_ENCRYPTION_KEY", "not valid base64"},
		{"EncryptionKey16Bytes", baseEnv(map[string]string{"RELAY_ENCRYPTION_KEY": key16}), "RELAY_ENCRYPTION_KEY", "decodes to 16 bytes, want exactly 32"},
		{"PreviousKeyWithoutKey", baseEnv(map[string]string{"RELAY_ENCRYPTION_KEY_PREVIOUS": key32}), "RELAY_ENCRYPTION_KEY_PREVIOUS", "RELAY_ENCRYPTION_KEY is not"},
		{"PreviousKeyNotBase64", baseEnv(map[string]string{"RELAY_ENCRYPTION_KEY": key32, "RELAY_ENCRYPTION_KEY_PREVIOUS": badKey}), "RELAY_ENCRYPTION_KEY_PREVIOUS", "not valid base64"},
		{"PreviousKey16Bytes", baseEnv(map[string]string{"RELAY_ENCRYPTION_KEY": key32, "RELAY_ENCRYPTION_KEY_PREVIOUS": key16}), "RELAY_ENCRYPTION_KEY_PREVIOUS", "decodes to 16 bytes"},
		{"LogFormatBad", baseEnv(map[string]string{"RELAY_LOG_FORMAT": "text"}), "RELAY_LOG_FORMAT", `invalid log format "text" (want json or console)`},
		{"LogLevelBad", baseEnv(map[string]string{"RELAY_LOG_LEVEL": "verbose"}), "RELAY_LOG_LEVEL", `invalid log level "verbose"`},
		{"LogLevelFatalNotOffered", baseEnv(map[string]string{"RELAY_LOG_LEVEL": "fatal"}), "RELAY_LOG_LEVEL", "invalid log level"},
		{"UpstreamWithoutAuthURL", baseEnv(map[string]string{"RELAY_UPSTREAM_URL": "http://127.0.0.1:3000"}), "RELAY_AUTH_URL", "required when RELAY_UPSTREAM_URL is set"},
		{"UpstreamNotAbsolute", baseEnv(map[string]string{"RELAY_UPSTREAM_URL": "127.0.0.1:3000", "RELAY_AUTH_URL": "http://127.0.0.1:3000/auth"}), "RELAY_UPSTREAM_URL", "absolute http(s) URL"},
		{"UpstreamWrongScheme", baseEnv(map[string]string{"RELAY_UPSTREAM_URL": "ftp://app", "RELAY_AUTH_URL": "http://127.0.0.1:3000/auth"}), "RELAY_UPSTREAM_URL", "absolute http(s) URL"},
		{"UpstreamUserInfoNotEchoed", baseEnv(map[string]string{"RELAY_UPSTREAM_URL": "ws://u:" + testPassword + "@app", "RELAY_AUTH_URL": "http://127.0.0.1:3000/auth"}), "RELAY_UPSTREAM_URL", "absolute http(s) URL"},
		{"AuthURLRelative", baseEnv(map[string]string{"RELAY_UPSTREAM_URL": "http://127.0.0.1:3000", "RELAY_AUTH_URL": "/auth"}), "RELAY_AUTH_URL", "absolute http(s) URL"},
		{"AuthURLWithoutUpstream", baseEnv(map[string]string{"RELAY_AUTH_URL": "http://127.0.0.1:3000/auth"}), "RELAY_AUTH_URL", "RELAY_UPSTREAM_URL is not"},
		{"AdminAddrSameAsListenInProxyMode", baseEnv(map[string]string{"RELAY_UPSTREAM_URL": "http://127.0.0.1:3000", "RELAY_AUTH_URL": "http://127.0.0.1:3000/auth", "RELAY_ADMIN_ADDR": ":8080"}), "RELAY_ADMIN_ADDR", "public port"},
		{"ProxyPrefixNoSlash", baseEnv(map[string]string{"RELAY_PROXY_PREFIX": "webhooks"}), "RELAY_PROXY_PREFIX", `invalid prefix "webhooks"`},
		{"ProxyPrefixTrailingSlash", baseEnv(map[string]string{"RELAY_PROXY_PREFIX": "/webhooks/"}), "RELAY_PROXY_PREFIX", "invalid prefix"},
		{"ProxyPrefixRoot", baseEnv(map[string]string{"RELAY_PROXY_PREFIX": "/"}), "RELAY_PROXY_PREFIX", "invalid prefix"},
		{"ProxyPrefixUnclean", baseEnv(map[string]string{"RELAY_PROXY_PREFIX": "/a//b"}), "RELAY_PROXY_PREFIX", "clean path"},
		{"AuthCacheTTLNegative", baseEnv(map[string]string{"RELAY_AUTH_CACHE_TTL": "-1s"}), "RELAY_AUTH_CACHE_TTL", "must be 0 (off) or at least 100ms"},
		{"AuthCacheTTLTooShort", baseEnv(map[string]string{"RELAY_AUTH_CACHE_TTL": "10ms"}), "RELAY_AUTH_CACHE_TTL", "must be 0 (off) or at least 100ms"},
		{"AuthCacheTTLBad", baseEnv(map[string]string{"RELAY_AUTH_CACHE_TTL": "ten"}), "RELAY_AUTH_CACHE_TTL", `invalid duration "ten"`},
		{"FrameAncestorsInjected", baseEnv(map[string]string{"RELAY_CONSOLE_FRAME_ANCESTORS": "'self'; script-src *"}), "RELAY_CONSOLE_FRAME_ANCESTORS", "want CSP sources separated by spaces"},
		{"ConsoleTitleTwoLines", baseEnv(map[string]string{"RELAY_CONSOLE_TITLE": "Acme\nInc"}), "RELAY_CONSOLE_TITLE", "one line"},
		{"ConsoleNotABool", baseEnv(map[string]string{"RELAY_CONSOLE": "maybe"}), "RELAY_CONSOLE", "maybe"},
		{"EgressProxyHTTPS", baseEnv(map[string]string{"RELAY_EGRESS_PROXY": "https://u:" + testPassword + "@proxy:443"}), "RELAY_EGRESS_PROXY", "https proxies are not supported"},
		{"EgressProxySocks", baseEnv(map[string]string{"RELAY_EGRESS_PROXY": "socks5://proxy:1080"}), "RELAY_EGRESS_PROXY", "scheme must be http"},
		{"EgressProxyNoHost", baseEnv(map[string]string{"RELAY_EGRESS_PROXY": "http://u:" + testPassword + "@:4750"}), "RELAY_EGRESS_PROXY", "has no host"},
		{"EgressProxyNotAURL", baseEnv(map[string]string{"RELAY_EGRESS_PROXY": "http://u:" + testPassword + " x@proxy/%"}), "RELAY_EGRESS_PROXY", "invalid URL"},
		{"EnforcesSSRFWithoutProxy", baseEnv(map[string]string{"RELAY_EGRESS_PROXY_ENFORCES_SSRF": "true"}), "RELAY_EGRESS_PROXY_ENFORCES_SSRF", "RELAY_EGRESS_PROXY is not set"},
		{"CAFileMissing", baseEnv(map[string]string{"RELAY_CA_FILE": "/nonexistent/ca.pem"}), "RELAY_CA_FILE", "cannot read /nonexistent/ca.pem: no such file or directory"},
		{"CAFileNoCertificate", baseEnv(map[string]string{"RELAY_CA_FILE": "config_test.go"}), "RELAY_CA_FILE", "config_test.go holds no PEM certificate"},
		{"PrivateCIDRsLoopback", baseEnv(map[string]string{"RELAY_ALLOW_PRIVATE_CIDRS": "10.20.0.0/16, 127.0.0.0/8"}), "RELAY_ALLOW_PRIVATE_CIDRS", "127.0.0.0/8 overlaps 127.0.0.0/8, which stays refused"},
		{"PrivateCIDRsMetadata", baseEnv(map[string]string{"RELAY_ALLOW_PRIVATE_CIDRS": "169.254.169.254/32"}), "RELAY_ALLOW_PRIVATE_CIDRS", "overlaps 169.254.0.0/16"},
		{"PrivateCIDRsEverything", baseEnv(map[string]string{"RELAY_ALLOW_PRIVATE_CIDRS": "0.0.0.0/0"}), "RELAY_ALLOW_PRIVATE_CIDRS", "overlaps 0.0.0.0/8"},
		{"PrivateCIDRsNotACIDR", baseEnv(map[string]string{"RELAY_ALLOW_PRIVATE_CIDRS": "10.20.0.0/16,intranet"}), "RELAY_ALLOW_PRIVATE_CIDRS", `"intranet" is not a CIDR`},
		{"PrivateCIDRsEmptyElement", baseEnv(map[string]string{"RELAY_ALLOW_PRIVATE_CIDRS": "10.20.0.0/16,,"}), "RELAY_ALLOW_PRIVATE_CIDRS", "CIDR 2 is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setEnv(t, tt.env)

			c, err := Load()
			requireConfigError(t, err, tt.wantVar)
			require.Contains(t, err.Error(), tt.want)
			require.Zero(t, c, "no partial Config on error")

			for _, secret := range []string{testToken, testPassword, badKey, key16, key32} {
				require.NotContains(t, err.Error(), secret, "error leaks a secret")
			}
		})
	}
}

// requireConfigError checks the contract of every error of Load: an *Error
// for the variable, one line, starting with the variable's name.
func requireConfigError(t *testing.T, err error, wantVar string) {
	t.Helper()
	require.Error(t, err)
	var ce *Error
	require.True(t, errors.As(err, &ce), "want *config.Error, got %T: %v", err, err)
	require.Equal(t, wantVar, ce.Var)
	msg := err.Error()
	require.True(t, strings.HasPrefix(msg, wantVar+": "), "error %q does not start with %s", msg, wantVar)
	require.NotContains(t, msg, "\n")
	require.NotContains(t, msg, "envconfig")
}

func TestValidateHandBuiltConfig(t *testing.T) {
	require.Error(t, Config{}.Validate())

	c := Config{
		DatabaseURL:                "postgres://db/app",
		APIToken:                   "t",
		Schema:                     "relay",
		ListenAddr:                 ":8080",
		OpsAddr:                    ":9090",
		AdminAddr:                  "127.0.0.1:8081",
		DBMaxConns:                 2,
		PollInterval:               time.Second,
		BatchSize:                  1,
		Workers:                    1,
		DeliveryTimeout:            time.Second,
		MaxPayloadBytes:            1,
		DisableAfter:               time.Hour,
		MaxInFlightPerSubscription: 1,
		Retention:                  time.Hour,
		LogFormat:                  "json",
		LogLevel:                   "info",
		ProxyPrefix:                "/webhooks",
	}
	require.NoError(t, c.Validate())

	c.EncryptionKey = make([]byte, 16)
	err := c.Validate()
	requireConfigError(t, err, "RELAY_ENCRYPTION_KEY")
	require.Contains(t, err.Error(), "16 bytes")
}

func TestUsage(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, Usage(&buf))
	out := buf.String()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	require.Regexp(t, `^VARIABLE\s+TYPE\s+DEFAULT\s+DESCRIPTION$`, lines[0])

	typ := reflect.TypeFor[Config]()
	require.Len(t, lines, 1+typ.NumField(), "one line per field:\n%s", out)

	descCol := strings.Index(lines[0], "DESCRIPTION")
	for i := range typ.NumField() {
		sf := typ.Field(i)
		name := sf.Tag.Get("envconfig")
		require.True(t, strings.HasPrefix(name, "RELAY_"), "field %s has variable %q", sf.Name, name)
		require.NotEmpty(t, sf.Tag.Get("desc"), "field %s has no description", sf.Name)
		require.LessOrEqual(t, len(sf.Tag.Get("desc")), 70, "description of %s is too long", name)

		line := lines[1+i]
		fieldsOfLine := strings.Fields(line)
		require.Equal(t, name, fieldsOfLine[0])
		require.Equal(t, defaultValue(reflect.ValueOf(defaultConfig()).Field(i), sf.Tag), fieldsOfLine[2], "default of %s", name)
		require.Equal(t, sf.Tag.Get("desc"), line[descCol:], "description of %s is aligned", name)
	}

	for _, want := range []string{
		"RELAY_DATABASE_URL ", "(required)",
		"RELAY_POLL_INTERVAL ", " 1s ",
		"RELAY_RETRY_SCHEDULE ", " 1m,5m,15m,1h ",
		"RELAY_MAX_PAYLOAD_BYTES ", " 262144 ",
		"RELAY_DISABLE_AFTER ", " 120h ",
		"RELAY_ADMIN_ADDR ", " 127.0.0.1:8081 ",
		"RELAY_LISTEN_DATABASE_URL ", " RELAY_DATABASE_URL ",
		"RELAY_PROXY_PREFIX ", " /webhooks ",
	} {
		require.Contains(t, out, want)
	}
}

// TestNoDefaultTags keeps defaults in package defaults alone: envconfig would
// prefer a default tag to defaultConfig's value, a second copy that the
// relay's packages do not see.
func TestNoDefaultTags(t *testing.T) {
	for _, f := range fields() {
		sf := reflect.TypeFor[Config]().Field(f.index)
		_, ok := sf.Tag.Lookup("default")
		require.False(t, ok, "%s has a default tag; set its default in package defaults and defaultConfig", f.name)
	}
}

// logLine is the line a zerolog logger writes with LogFields.
func logLine(c Config) string {
	var buf bytes.Buffer
	log := zerolog.New(&buf)
	log.Info().Fields(c.LogFields()).Msg("configuration")
	return buf.String()
}

// logged returns the variables of logLine.
func logged(t *testing.T, c Config) map[string]string {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(logLine(c)), &m))
	out := make(map[string]string)
	for k, v := range m {
		if strings.HasPrefix(k, "RELAY_") {
			s, ok := v.(string)
			require.True(t, ok, "%s is logged as %T", k, v)
			out[k] = s
		}
	}
	return out
}

func TestLogFields(t *testing.T) {
	setEnv(t, baseEnv(map[string]string{
		"RELAY_LISTEN_DATABASE_URL":     "host=db user=relay password='" + testPassword + "' dbname=app",
		"RELAY_ENCRYPTION_KEY":          base64.StdEncoding.EncodeToString(testKey),
		"RELAY_ENCRYPTION_KEY_PREVIOUS": base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, KeySize)),
	}))
	c, err := Load()
	require.NoError(t, err)

	fields := c.LogFields()
	require.Len(t, fields, 2*reflect.TypeFor[Config]().NumField())
	require.Equal(t, []any{"RELAY_DATABASE_URL", "postgres://relay:xxxxx@db.internal:5432/app?sslmode=disable"}, fields[:2], "in field order")
	r := logged(t, c)
	require.Len(t, r, reflect.TypeFor[Config]().NumField())
	require.Equal(t, "postgres://relay:xxxxx@db.internal:5432/app?sslmode=disable", r["RELAY_DATABASE_URL"])
	require.Equal(t, "host=db user=relay password=xxxxx dbname=app", r["RELAY_LISTEN_DATABASE_URL"])
	require.Equal(t, "[redacted]", r["RELAY_API_TOKEN"])
	require.Equal(t, "[redacted]", r["RELAY_ENCRYPTION_KEY"])
	require.Equal(t, "[redacted]", r["RELAY_ENCRYPTION_KEY_PREVIOUS"])
	require.Equal(t, "1m,5m,15m,1h", r["RELAY_RETRY_SCHEDULE"])
	require.Equal(t, "100", r["RELAY_BATCH_SIZE"])
	require.Equal(t, "false", r["RELAY_ALLOW_HTTP"])

	asJSON, err := json.Marshal(c)
	require.NoError(t, err)
	keyJSON, err := json.Marshal(c.EncryptionKey)
	require.NoError(t, err)
	secrets := []string{testToken, testPassword, base64.StdEncoding.EncodeToString(testKey), base64.RawStdEncoding.EncodeToString(testKey)}
	for name, out := range map[string]string{
		"String": c.String(),
		"%v":     fmt.Sprintf("%v", c),
		"%+v":    fmt.Sprintf("%+v", c),
		"%#v":    fmt.Sprintf("%#v", c),
		"%v key": fmt.Sprintf("%v %#v", c.EncryptionKey, c.EncryptionKey),
		"JSON":   string(asJSON) + string(keyJSON),
		"log":    logLine(c),
	} {
		for _, s := range secrets {
			require.NotContains(t, out, s, "%s leaks a secret", name)
		}
	}
	require.Contains(t, c.String(), `RELAY_WORKERS="64"`)
}

func TestLogFieldsEmptySecrets(t *testing.T) {
	setEnv(t, baseEnv(map[string]string{"RELAY_API_TOKEN": "", "RELAY_INSECURE_NO_AUTH": "true"}))
	c, err := Load()
	require.NoError(t, err)

	r := logged(t, c)
	require.Empty(t, r["RELAY_API_TOKEN"], "an empty token shows as empty, so the log tells auth is off")
	require.Empty(t, r["RELAY_ENCRYPTION_KEY"])
}

func TestRedactDatabaseURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"postgres://db/app", "postgres://db/app"},
		{"postgres://relay@db/app", "postgres://relay@db/app"},
		{"postgres://relay:pw@db/app", "postgres://relay:xxxxx@db/app"},
		{"postgresql://db/app?password=pw&sslpassword=pw2", "postgresql://db/app?password=xxxxx&sslpassword=xxxxx"},
		{"postgres://relay:p%ZZ@db/app", "(invalid URL, hidden)"},
		{"host=db password=pw", "host=db password=xxxxx"},
		{"host=db password = 'p w' sslpassword=x", "host=db password = xxxxx sslpassword=xxxxx"},
		{`host=db password='it\'s' user=u`, "host=db password=xxxxx user=u"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, redactDatabaseURL(tt.in), "input %q", tt.in)
	}
}

func FuzzDurationListDecode(f *testing.F) {
	for _, s := range []string{"", "1m,5m,15m,1h", " 1s , 2s", "1m,,2m", "x", "-1s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var l DurationList
		if err := l.Decode(s); err != nil {
			require.NotContains(t, err.Error(), "\n")
			return
		}
		// What decodes, re-encodes to an equivalent list.
		var again DurationList
		require.NoError(t, again.Decode(l.String()))
		require.Equal(t, l, again)
	})
}

func FuzzKeyDecode(f *testing.F) {
	for _, s := range []string{"", base64.StdEncoding.EncodeToString(testKey), base64.RawURLEncoding.EncodeToString(testKey), "not base64", "AAAA"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var k Key
		err := k.Decode(s)
		if err != nil {
			// Only fixed texts and a byte count: the key is never echoed.
			require.Regexp(t, `^(not valid base64|key decodes to \d+ bytes, want exactly 32) \([a-z0-9 :;-]+ openssl rand -base64 32\)$`, err.Error())
			return
		}
		require.True(t, len(k) == 0 || len(k) == KeySize, "decoded %d bytes", len(k))
	})
}

// TestDatabaseURLs checks RELAY_DATABASE_URL and RELAY_LISTEN_DATABASE_URL against what
// lib/pq accepts, including what it would only refuse when connecting (which the relay
// retries forever), without echoing the password.
func TestDatabaseURLs(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeTestCert(t, dir)
	garbage := filepath.Join(dir, "garbage.pem")
	require.NoError(t, os.WriteFile(garbage, []byte("not PEM\n"), 0o600))
	looseKey := filepath.Join(dir, "loose.key")
	keyPEM, err := os.ReadFile(key)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(looseKey, keyPEM, 0o644))
	require.NoError(t, os.Chmod(looseKey, 0o644)) // whatever the umask
	const url = "postgres://relay:" + testPassword + "@db.internal:5432/app"
	// An unquoted password with a space: lib/pq takes its second half for a key.
	const spacedPassword = "pw-SECRET g7h8i9"

	good := []string{
		testDBURL,
		"postgresql://relay@db.internal/app",
		"postgres://",
		"host=pgbouncer port=6432 dbname=app password='a b'",
		url + "?sslmode=disable",
		url + "?sslmode=allow",
		url + "?sslmode=prefer",
		url + "?sslmode=require",
		url + "?sslmode=verify-ca&sslrootcert=" + cert,
		url + "?sslmode=verify-full&sslrootcert=" + cert,
		url + "?sslmode=verify-full&sslrootcert=system",
		url + "?sslrootcert=system",                                               // implies verify-full
		url + "?sslmode=require&sslrootcert=" + filepath.Join(dir, "missing.crt"), // lib/pq skips a missing file unless it verifies
		url + "?sslmode=",                                                         // an empty value is dropped: lib/pq's default
		url + "?sslmode=verify-full&sslrootcert=" + cert + "&sslcert=" + cert + "&sslkey=" + key,
		url + "?sslmode=require&sslnegotiation=direct",
		url + "?connect_timeout=5&application_name=relay&target_session_attrs=read-write",
		url + "?search_path=app&statement_timeout=5s", // run-time parameters for PostgreSQL
		url + "?tcp_user_timeout=5000",                // not known to lib/pq, but a PostgreSQL setting
		"host=db1,db2 port=5432,5433 user=relay dbname=app sslmode=disable",
		"host=/var/run/postgresql dbname=app",
		"host=db dbname=app options='-c statement_timeout=5s'",
	}
	for _, dsn := range good {
		t.Run("Good", func(t *testing.T) {
			require.Empty(t, checkDatabaseURL(dsn), "DSN %q", dsn)
		})
	}

	bad := []struct {
		name, dsn, want string
	}{
		{"SSLModeBogus", url + "?sslmode=bogus", `wrong value for "sslmode": "bogus" is not supported; supported values are disable, allow, prefer, require, verify-full, or verify-ca`},
		{"SSLModeBogusKeyValue", "host=db password=" + testPassword + " sslmode=bogus", `"bogus" is not supported`},
		{"SSLModeUppercase", url + "?sslmode=Require", `"Require" is not supported`},
		{"SSLNegotiationBogus", url + "?sslnegotiation=fast", `wrong value for "sslnegotiation"`},
		{"DirectWithWeakSSLMode", url + "?sslnegotiation=direct&sslmode=prefer", `weak sslmode "prefer" may not be used with sslnegotiation=direct`},
		{"SystemRootWithWeakSSLMode", url + "?sslrootcert=system&sslmode=require", `weak sslmode "require" may not be used with sslrootcert=system`},
		{"RootCertMissing", url + "?sslmode=verify-full&sslrootcert=" + filepath.Join(dir, "missing.crt"), "TLS settings: open " + filepath.Join(dir, "missing.crt")},
		{"RootCertNotPEM", url + "?sslmode=verify-ca&sslrootcert=" + garbage, "TLS settings: couldn't parse pem from sslrootcert"},
		{"ClientKeyReadableByOthers", url + "?sslmode=require&sslcert=" + cert + "&sslkey=" + looseKey, "TLS settings: private key has world access"},
		{"ClientCertNotPEM", url + "?sslmode=require&sslcert=" + garbage + "&sslkey=" + key, "TLS settings: tls: failed to find any PEM data in certificate input"},
		{"InlineCertNotPEM", url + "?sslmode=require&sslinline=true&sslcert=x&sslkey=y", "TLS settings: tls: failed to find any PEM data"},
		{"PortNotNumber", "host=db port=abc password=" + testPassword, `wrong value for "port"`},
		{"PortOutOfRange", "postgres://relay:" + testPassword + "@db:99999/app", `wrong value for "port"`},
		{"HostaddrNotIP", "hostaddr=db.internal password=" + testPassword, `wrong value for "hostaddr"`},
		{"PortsDoNotMatchHosts", "host=a,b,c port=1,2 password=" + testPassword, "could not match 2 port numbers to 3 hosts"},
		{"ConnectTimeoutNotNumber", url + "?connect_timeout=soon", `wrong value for "connect_timeout"`},
		{"TargetSessionAttrsBogus", url + "?target_session_attrs=master", `wrong value for "target_session_attrs"`},
		{"ClientEncodingNotUTF8", url + "?client_encoding=LATIN1", `unsupported client_encoding "LATIN1"`},
		{"LibpqOnlyKeepalives", url + "?keepalives=1", `setting "keepalives" is a libpq option that lib/pq does not support`},
		{"LibpqOnlySSLPassword", url + "?sslpassword=" + testPassword, `setting "sslpassword" is a libpq option`},
		{"LibpqOnlyChannelBinding", "host=db channel_binding=require password=" + testPassword, `setting "channel_binding"`},
		{"SchemeCapitalised", "Postgres://relay:" + testPassword + "@db/app", "scheme must be postgres:// or postgresql://"},
		{"SchemeOther", "mysql://root:" + testPassword + "@db/app", "scheme must be postgres:// or postgresql://"},
		{"PasswordNotEncoded", "postgres://relay:" + testPassword + "/x@db/app", "percent-encode special characters"},
		{"BadEscape", "postgres://relay:" + testPassword + "%zz@db/app", "percent-encode special characters"},
		{"UnquotedSpaceInPassword", "host=db password=" + spacedPassword + " dbname=app", `a word without "="`},
		{"UnterminatedQuote", "host=db password='" + testPassword, "unterminated quoted string literal"},
		{"NotADSN", testPassword, "invalid URL"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			msg := checkDatabaseURL(tt.dsn)
			require.Contains(t, msg, tt.want)
			for _, secret := range []string{testPassword, "g7h8i9", "pw-SECRET"} {
				require.NotContains(t, msg, secret, "message leaks the password")
			}

			for _, name := range []string{"RELAY_DATABASE_URL", "RELAY_LISTEN_DATABASE_URL"} {
				setEnv(t, baseEnv(map[string]string{name: tt.dsn}))
				_, err := Load()
				requireConfigError(t, err, name)
				require.NotContains(t, err.Error(), testPassword)
			}
		})
	}
}

func TestDatabaseURLWithoutUserUnderUnknownUID(t *testing.T) {
	// What os/user says in a container running under a UID without a passwd entry.
	msg := pqMessage(errors.New("user: unknown userid 1000650000"), "want postgres://user@host/db")
	require.Equal(t, "names no user, and this process's user name is unknown (user: unknown userid 1000650000); want postgres://user@host/db", msg)
}

// writeTestCert writes a self-signed certificate and its key (0600) as PEM files.
func writeTestCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "db.internal"},
		DNSNames:              []string{"db.internal"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(priv)
	require.NoError(t, err)
	certFile, keyFile = filepath.Join(dir, "db.crt"), filepath.Join(dir, "db.key")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600))
	return certFile, keyFile
}

func FuzzCheckDatabaseURL(f *testing.F) {
	for _, s := range []string{testDBURL, "host=db password='a b' sslmode=bogus", "postgres://u:p/x@db/app", "host=a,b port=1,2,3", "x=1 keepalives=1", "sslmode=verify-full sslrootcert=/nonexistent", "'"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		msg := checkDatabaseURL(s) // must not panic or hang, whatever lib/pq makes of it
		require.NotContains(t, msg, "\n")
	})
}
