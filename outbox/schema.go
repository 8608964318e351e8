package outbox

import (
	"embed"
	"fmt"
	"hash/fnv"
	"io/fs"
	"sort"
	"strconv"
	"strings"

	"github.com/lib/pq"

	"github.com/referralloop/outbox-relay/internal/defaults"
)

// DefaultSchema is the PostgreSQL schema that holds the relay's objects unless RELAY_SCHEMA
// names another.
const DefaultSchema = defaults.Schema

//go:embed migrations/*.sql
var migrationFiles embed.FS

//go:embed functions/*.sql
var functionFiles embed.FS

// schemaPlaceholder stands for the quoted schema name in SQL text.
const schemaPlaceholder = "{{schema}}"

// Qualify replaces every {{schema}} in query with the quoted schema name. The name is an
// identifier, never a value: values always travel as bind parameters.
func Qualify(schema, query string) string {
	return strings.ReplaceAll(query, schemaPlaceholder, pq.QuoteIdentifier(schema))
}

// Channel is the NOTIFY channel the outbox trigger signals for schema.
func Channel(schema string) string { return schema + channelSuffix }

// migration is one embedded, versioned SQL file.
type migration struct {
	version int
	name    string
	sql     string
}

// migrations returns the embedded migrations in version order.
func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("reading embedded migrations: %w", err)
	}
	var out []migration
	for _, e := range entries {
		name := e.Name()
		num, _, ok := strings.Cut(name, "_")
		version, err := strconv.Atoi(num)
		if !ok || err != nil || !strings.HasSuffix(name, ".sql") {
			return nil, fmt.Errorf("migration %q: name must be NNNN_description.sql", name)
		}
		body, err := fs.ReadFile(migrationFiles, "migrations/"+name)
		if err != nil {
			return nil, fmt.Errorf("reading migration %s: %w", name, err)
		}
		out = append(out, migration{version: version, name: name, sql: string(body)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i := 1; i < len(out); i++ {
		if out[i].version == out[i-1].version {
			return nil, fmt.Errorf("migrations %s and %s share version %d", out[i-1].name, out[i].name, out[i].version)
		}
	}
	return out, nil
}

// function is one embedded function file: the current definition of one SQL function.
type function struct {
	name    string // the file name without .sql: the function's name
	version int    // from the file's first line, "-- version: N"
	sql     string
}

// functions returns the embedded function files in name order.
func functions() ([]function, error) {
	entries, err := fs.ReadDir(functionFiles, "functions")
	if err != nil {
		return nil, fmt.Errorf("reading embedded functions: %w", err)
	}
	var out []function
	for _, e := range entries {
		file := e.Name()
		name, ok := strings.CutSuffix(file, ".sql")
		if !ok {
			continue
		}
		body, err := fs.ReadFile(functionFiles, "functions/"+file)
		if err != nil {
			return nil, fmt.Errorf("reading function %s: %w", file, err)
		}
		first, _, _ := strings.Cut(string(body), "\n")
		v, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(first, "-- version:")))
		if !strings.HasPrefix(first, "-- version:") || err != nil || v < 1 {
			return nil, fmt.Errorf("function %s: the first line must be \"-- version: N\"", file)
		}
		out = append(out, function{name: name, version: v, sql: string(body)})
	}
	return out, nil
}

// MigrationsFingerprint identifies the embedded migrations' and functions' content, so that
// a cached copy of the schema (a test template database) is rebuilt whenever one changes.
func MigrationsFingerprint() string {
	ms, err := migrations()
	if err != nil {
		return "invalid"
	}
	fns, err := functions()
	if err != nil {
		return "invalid"
	}
	h := fnv.New64a()
	for _, m := range ms {
		h.Write([]byte(m.name))
		h.Write([]byte(m.sql))
	}
	for _, f := range fns {
		h.Write([]byte(f.name))
		h.Write([]byte(f.sql))
	}
	return strconv.FormatUint(h.Sum64(), 16)
}
