package outbox

import (
	"fmt"
	"regexp"
	"strings"
)

// maxIdentifierLen is PostgreSQL's limit on identifiers, in bytes (NAMEDATALEN - 1).
const maxIdentifierLen = 63

// channelSuffix turns a schema name into its NOTIFY channel (Channel).
const channelSuffix = "_outbox"

// MaxSchemaNameLen is the longest schema name CheckSchemaName accepts, in bytes: the name's
// NOTIFY channel must fit in PostgreSQL's 63-byte identifier limit. With a longer channel
// pg_notify fails, and with it the trigger and so every insert into the outbox, while LISTEN
// truncates the name and waits on a channel nobody signals.
const MaxSchemaNameLen = maxIdentifierLen - len(channelSuffix)

// The channel is built by concatenation, not quoted, so only characters that need no quoting
// in an identifier are allowed; upper case would be folded by an unquoted LISTEN.
var schemaNameRE = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// CheckSchemaName returns nil when name can hold the relay's objects, and otherwise an error
// that says what to change (one line; it quotes name). It is the only rule for schema names:
// RELAY_SCHEMA, Migrate and Publisher all apply it.
func CheckSchemaName(name string) error {
	switch {
	case !schemaNameRE.MatchString(name):
		return fmt.Errorf("invalid schema name %q (want lowercase letters, digits and _, not starting with a digit)", name)
	case len(name) > MaxSchemaNameLen:
		return fmt.Errorf("schema name %q is %d characters, want at most %d (the NOTIFY channel %s must fit in PostgreSQL's %d)",
			name, len(name), MaxSchemaNameLen, Channel(name), maxIdentifierLen)
	case strings.HasPrefix(name, "pg_"):
		// CREATE SCHEMA refuses it; said here, a bad RELAY_SCHEMA stops start-up with one line
		// instead of failing migrations that are retried for ever.
		return fmt.Errorf("schema name %q starts with pg_, which PostgreSQL reserves", name)
	}
	return nil
}

// ValidSchemaName reports whether CheckSchemaName accepts name.
func ValidSchemaName(name string) bool { return CheckSchemaName(name) == nil }
