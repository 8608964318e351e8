package api

import (
	"encoding/json"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/relay/ids"
)

// openAPIDoc is the part of openapi.json the checks below read.
type openAPIDoc struct {
	OpenAPI    string                                 `json:"openapi"`
	Paths      map[string]map[string]openAPIOperation `json:"paths"`
	Components struct {
		Schemas    map[string]json.RawMessage `json:"schemas"`
		Parameters map[string]struct {
			Name string `json:"name"`
			In   string `json:"in"`
		} `json:"parameters"`
	} `json:"components"`
}

type openAPIOperation struct {
	OperationID string `json:"operationId"`
	Parameters  []struct {
		Ref string `json:"$ref"`
	} `json:"parameters"`
	RequestBody json.RawMessage            `json:"requestBody"`
	Responses   map[string]json.RawMessage `json:"responses"`
}

func readOpenAPI(t *testing.T) (openAPIDoc, any) {
	t.Helper()
	raw, err := os.ReadFile("openapi.json")
	require.NoError(t, err)
	var doc openAPIDoc
	require.NoError(t, json.Unmarshal(raw, &doc))
	var generic any
	require.NoError(t, json.Unmarshal(raw, &generic))
	return doc, generic
}

// TestOpenAPIMatchesRoutes checks openapi.json against the API: the same routes, every
// reference resolves, every path parameter and every POST's Idempotency-Key is declared, and
// the error codes are exactly those the API answers.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	t.Parallel()
	doc, generic := readOpenAPI(t)
	require.True(t, strings.HasPrefix(doc.OpenAPI, "3."), "OpenAPI 3: %q", doc.OpenAPI)

	db, err := sqlx.Open("postgres", "postgres://unused")
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	a, err := New(Config{DB: db, DeliveryIDs: new(ids.Deliveries)})
	require.NoError(t, err)

	var served, documented []string
	for _, rt := range a.routes() {
		served = append(served, rt.method+" "+rt.pattern)
	}
	methods := []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}
	opIDs := map[string]bool{}
	for path, item := range doc.Paths {
		for method, op := range item {
			if !slices.Contains(methods, method) {
				continue // parameters, summary, ... of the path item
			}
			documented = append(documented, strings.ToUpper(method)+" "+path)
			where := strings.ToUpper(method) + " " + path

			require.NotEmpty(t, op.OperationID, where)
			require.False(t, opIDs[op.OperationID], "operationId %s twice", op.OperationID)
			opIDs[op.OperationID] = true

			var params []string
			for _, p := range op.Parameters {
				name, ok := strings.CutPrefix(p.Ref, "#/components/parameters/")
				require.True(t, ok, "%s: parameters are references: %q", where, p.Ref)
				def, ok := doc.Components.Parameters[name]
				require.True(t, ok, "%s: no parameter %s", where, name)
				params = append(params, def.In+":"+def.Name)
			}
			for _, m := range regexp.MustCompile(`\{([a-z_]+)\}`).FindAllStringSubmatch(path, -1) {
				require.Contains(t, params, "path:"+m[1], "%s declares its path parameter", where)
			}
			require.Contains(t, params, "header:X-Tenant-ID", where)
			if method == "post" {
				require.Contains(t, params, "header:Idempotency-Key", "%s takes an Idempotency-Key", where)
			}
			if method == "post" || method == "patch" {
				require.NotEmpty(t, op.RequestBody, "%s describes its body", where)
			}

			var success int
			for code := range op.Responses {
				if strings.HasPrefix(code, "2") {
					success++
				}
			}
			require.Equal(t, 1, success, "%s has one success answer", where)
			for _, code := range []string{"401", "500", "503"} {
				if code == "503" && path == "/v1/openapi.json" {
					continue // reads no database
				}
				require.Contains(t, op.Responses, code, where)
			}
			if strings.Contains(path, "{") {
				require.Contains(t, op.Responses, "404", where)
			}
			if op.RequestBody != nil {
				for _, code := range []string{"400", "413", "415"} {
					require.Contains(t, op.Responses, code, where)
				}
			}
		}
	}
	sort.Strings(served)
	sort.Strings(documented)
	require.Equal(t, served, documented, "openapi.json describes exactly the routes API.routes serves")

	// Every $ref points at something.
	var refs []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				if s, ok := e.(string); ok && k == "$ref" {
					refs = append(refs, s)
				}
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(generic)
	require.NotEmpty(t, refs)
	for _, ref := range refs {
		target := generic
		parts, ok := strings.CutPrefix(ref, "#/")
		require.True(t, ok, "local references only: %s", ref)
		for _, p := range strings.Split(parts, "/") {
			m, ok := target.(map[string]any)
			require.True(t, ok, "%s", ref)
			target, ok = m[p]
			require.True(t, ok, "%s does not resolve", ref)
		}
	}

	// The error codes: exactly the API's.
	var codes struct {
		Enum []string `json:"enum"`
	}
	require.NoError(t, json.Unmarshal(doc.Components.Schemas["ErrorCode"], &codes))
	want := slices.Clone(errorCodes)
	sort.Strings(want)
	sort.Strings(codes.Enum)
	require.Equal(t, want, codes.Enum)
	require.Len(t, slices.Compact(slices.Clone(want)), len(want), "errorCodes has no repeats")
}

// TestErrorCodesListed keeps errorCodes complete: every code constant in errors.go is in it.
func TestErrorCodesListed(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile("errors.go")
	require.NoError(t, err)
	consts := regexp.MustCompile(`(?m)^\s+code[A-Za-z]+\s+= "([a-z_]+)"`).FindAllStringSubmatch(string(src), -1)
	require.NotEmpty(t, consts)
	for _, m := range consts {
		require.Contains(t, errorCodes, m[1])
	}
	require.Contains(t, errorCodes, codeInvalidTargetURL) // defined as targets.CodeInvalidTargetURL
}

// TestOpenAPISchemasMatchAnswers keeps the object schemas in step with the Go types the API
// answers: the same fields, every one required (the API always writes them, null included).
func TestOpenAPISchemasMatchAnswers(t *testing.T) {
	t.Parallel()
	doc, _ := readOpenAPI(t)
	for name, v := range map[string]any{
		"Subscription":    subscriptionJSON{},
		"Delivery":        deliveryJSON{},
		"Attempt":         attemptJSON{},
		"Event":           eventJSON{},
		"EventSummary":    eventSummaryJSON{},
		"DeliverySummary": deliverySummaryJSON{},
		"LastAttempt":     lastAttemptJSON{},
	} {
		t.Run(name, func(t *testing.T) {
			var schema struct {
				Required   []string                   `json:"required"`
				Properties map[string]json.RawMessage `json:"properties"`
			}
			require.NoError(t, json.Unmarshal(doc.Components.Schemas[name], &schema))
			var fields []string
			typ := reflect.TypeOf(v)
			for i := range typ.NumField() {
				tag, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
				require.NotEmpty(t, tag, "%s.%s has a json name", typ.Name(), typ.Field(i).Name)
				fields = append(fields, tag)
			}
			documented := make([]string, 0, len(schema.Properties))
			for p := range schema.Properties {
				documented = append(documented, p)
			}
			sort.Strings(fields)
			sort.Strings(documented)
			required := slices.Clone(schema.Required)
			sort.Strings(required)
			require.Equal(t, fields, documented, "properties of %s", name)
			require.Equal(t, fields, required, "required of %s", name)
		})
	}
}
